"""Batches through the real gateway: its items in, its items' listing out.

Covers: a create with `items` that fit the object puts them in spec.items and stores
nothing; a larger one stores them in Redis first (one hash, index -> the item's JSON, with
a TTL) and names them in spec.itemsFrom {upload, count}; bad input (items not a list, too
many, an item that is not an object, too large or with too many keys, even past the first
thousand; items with spec.items; spec.itemsFrom from the caller) is a 422 Problem naming
the field, with no LongTask created and nothing stored; a create the apiserver refuses (a
name taken) leaves no upload; a create with an Idempotency-Key
sent twice makes one task and leaves one upload, and the key with other items is a 422;
GET .../items lists a batch's items (state written by the real batch script) with their
phases in pages that hold each item once, filters by phase, is a 404 for a task that is
not a batch and a 422 for a bad phase or continue; `longtask items` prints them as a table
(--phase Failed: index, phase, attempts, finished, the error) and follows `continue` to the
end or to --limit; `longtask submit --items FILE` sends a JSON array or JSON Lines file
(--watch follows the batch to Succeeded) and says what is wrong with a file it cannot read;
a real batch of 1,200 items (stored by the gateway, run by the workers) lists each item's
result, and phase=Failed its failed items with their errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from longtask_contracts import batch, batchledger, models, names
from tests import lt
from tests.batchstate import Batch

pytestmark = pytest.mark.cluster


def _post(platform, namespace: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    with httpx.Client(base_url=platform.api_url, timeout=60) as client:
        return client.post(f"/v1/namespaces/{namespace}/tasks", json=body, headers=headers)


def _body(items: Any, /, **spec: Any) -> dict[str, Any]:
    # A pool no worker serves: nothing runs these items; the tests look at what was stored.
    return {"spec": {"task": "demo.noop", "pool": f"nobody-{uuid.uuid4().hex[:6]}", **spec}, "items": items}


def _uploads(redis_client) -> set[str]:
    return set(redis_client.scan_iter(match=names.upload("*"), count=1000))


def _tasks(kubectl, namespace: str) -> list[dict[str, Any]]:
    return json.loads(kubectl("get", "lt", "-n", namespace, "-o", "json").stdout)["items"]


def _stored(redis_client, *, upload: str, uid: str) -> dict[str, str]:
    """The items an upload holds: under its own key, or the batch's if it started meanwhile."""
    return redis_client.hgetall(names.upload(upload)) or redis_client.hgetall(names.items_inputs(uid))


def test_items_that_fit_go_in_the_object(platform, kubectl, namespace, redis_client):
    before = _uploads(redis_client)
    items = [{"doc": f"d{i}.pdf", "n": i} for i in range(3)]
    answer = _post(platform, namespace, {**_body(items, parallelism=2), "name": "small"})
    assert answer.status_code == 202, answer.text
    spec = lt.get(kubectl, namespace, "small")["spec"]
    assert spec["items"] == items and spec["parallelism"] == 2 and "itemsFrom" not in spec
    assert _uploads(redis_client) == before, "nothing stored"


def test_larger_batches_are_stored_before_the_create(platform, kubectl, namespace, redis_client):
    items = [{"doc": f"d{i}.pdf"} for i in range(models.INLINE_ITEMS_MAX + 500)]
    answer = _post(platform, namespace, {**_body(items), "name": "large"})
    assert answer.status_code == 202, answer.text
    obj = lt.get(kubectl, namespace, "large")
    source = obj["spec"]["itemsFrom"]
    assert "items" not in obj["spec"] and source["count"] == len(items)
    stored = _stored(redis_client, upload=source["upload"], uid=obj["metadata"]["uid"])
    assert {int(i): json.loads(v) for i, v in stored.items()} == dict(enumerate(items))
    if redis_client.exists(names.upload(source["upload"])):
        assert 0 < redis_client.ttl(names.upload(source["upload"])) <= 86_400, "an unused upload expires"


def test_heavy_items_are_stored_too(platform, kubectl, namespace, redis_client):
    items = [{"text": "x" * 10_000, "i": i} for i in range(60)]  # 600 KB: over the object's 512 KiB
    answer = _post(platform, namespace, {**_body(items), "name": "heavy"})
    assert answer.status_code == 202, answer.text
    assert lt.get(kubectl, namespace, "heavy")["spec"]["itemsFrom"]["count"] == 60


MANY = [{}] * models.INLINE_ITEMS_MAX
FOREIGN = {"upload": "abcdefgh", "count": 1}


@pytest.mark.parametrize(
    ("case", "body", "field"),
    [
        ("items not a list", _body({"a": 1}), "items"),
        ("no items", _body([]), "items"),
        ("too many items", _body([{}] * 100_001), "items"),
        ("an item not an object", _body([*MANY, {}, 7]), f"items.{models.INLINE_ITEMS_MAX + 1}"),
        ("an oversized item", _body([*MANY, {"blob": "x" * 17_000}]), f"items.{models.INLINE_ITEMS_MAX}"),
        ("an item with too many keys", _body([{}, {f"k{i}": i for i in range(65)}]), "items.1"),
        ("items and spec.items", _body([{}], items=[{}]), "items"),
        ("a caller's itemsFrom", {"spec": {"task": "demo.noop", "itemsFrom": FOREIGN}}, "spec.itemsFrom"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_bad_input_is_a_422_and_leaves_nothing(platform, kubectl, namespace, redis_client, case, body, field):
    before = _uploads(redis_client)
    answer = _post(platform, namespace, body)
    assert answer.status_code == 422, f"{case}: {answer.text[:300]}"
    problem = answer.json()
    assert problem["detail"] and [e["field"] for e in problem["errors"]] == [field], problem
    assert _tasks(kubectl, namespace) == [], "nothing created"
    assert _uploads(redis_client) == before, "nothing stored"


def test_a_refused_create_leaves_no_upload(platform, kubectl, namespace, redis_client):
    lt.create(kubectl, namespace, "taken", task="demo.noop", pool="nobody")
    before = _uploads(redis_client)
    answer = _post(platform, namespace, {**_body([{"i": i} for i in range(1500)]), "name": "taken"})
    assert answer.status_code == 409, answer.text
    assert _uploads(redis_client) == before, "the apiserver refused the create: its upload is deleted"


def test_an_idempotent_retry_makes_one_task_and_one_upload(platform, kubectl, namespace, redis_client):
    before = _uploads(redis_client)
    key = str(uuid.uuid4())
    body = _body([{"i": i} for i in range(1500)])
    first, second = _post(platform, namespace, body, key), _post(platform, namespace, body, key)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["uid"] == second.json()["uid"]
    (task,) = _tasks(kubectl, namespace)
    upload = task["spec"]["itemsFrom"]["upload"]
    assert _uploads(redis_client) - before <= {names.upload(upload)}, "the retry's own upload is gone"
    other = _post(platform, namespace, _body([{"i": i} for i in range(1501)]), key)
    assert other.status_code == 422 and "another request body" in other.json()["detail"]
    assert len(_tasks(kubectl, namespace)) == 1


def _items(platform, namespace: str, name: str, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        return client.get(f"/v1/namespaces/{namespace}/tasks/{name}/items", params=params)


def _all(platform, namespace: str, name: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = None
    while True:
        answer = _items(platform, namespace, name, **params, **({"continue": token} if token else {}))
        assert answer.status_code == 200, answer.text
        out += answer.json()["items"]
        token = answer.json().get("continue")
        if not token:
            return out


def test_a_batchs_items_are_listed_with_their_phases(platform, kubectl, namespace, redis_client):
    body = {**_body([{"i": i} for i in range(8)], parallelism=2), "name": "listed"}
    assert _post(platform, namespace, body).status_code == 202
    obj = lt.get(kubectl, namespace, "listed")
    b = Batch(redis_client, total=8, parallelism=2, uid=obj["metadata"]["uid"], pool=obj["spec"]["pool"])
    assert b.take(1, 3) == [0, 1, 2]
    b.report(1, [
        batchledger.Outcome(index=0, code="s", record=batch.ItemRecord(index=0, attempts=1, result="ok")),
        batchledger.Outcome(index=1, code="f", record=batch.ItemRecord(
            index=1, attempts=1, error={"type": "PermanentError", "message": "no such document"})),
    ])  # fmt: skip

    every = _all(platform, namespace, "listed", limit=3)
    assert [(e["index"], e["phase"]) for e in every] == [
        (0, "Succeeded"), (1, "Failed"), (2, "Running"), *((i, "Queued") for i in range(3, 8))
    ]  # fmt: skip
    assert every[0]["result"] == "ok" and every[1]["error"]["message"] == "no such document"
    failed = _all(platform, namespace, "listed", phase="Failed")
    assert [(e["index"], e["attempts"]) for e in failed] == [(1, 1)]
    assert [e["index"] for e in _all(platform, namespace, "listed", phase="Queued", limit=2)] == list(
        range(3, 8)
    )

    assert _items(platform, namespace, "listed", phase="Sleeping").status_code == 422
    bad = _items(platform, namespace, "listed", **{"continue": "not-a-token"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "continue"
    assert _items(platform, namespace, "listed", limit=1001).status_code == 422
    lt.create(kubectl, namespace, "single", task="demo.noop", pool="nobody")
    assert _items(platform, namespace, "single").status_code == 404
    assert _items(platform, namespace, "missing").status_code == 404


def _cli(platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longtask_cli", *args, "--api", platform.api_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_cli_lists_items_across_pages(platform, kubectl, namespace, redis_client):
    total = 2500
    assert (
        _post(platform, namespace, {**_body([{"i": i} for i in range(total)]), "name": "cli"}).status_code
        == 202
    )
    obj = lt.get(kubectl, namespace, "cli")
    b = Batch(redis_client, total=total, parallelism=1, uid=obj["metadata"]["uid"], pool=obj["spec"]["pool"])
    assert b.take(1, 3) == [0, 1, 2]
    b.report(1, [
        batchledger.Outcome(index=0, code="s", record=batch.ItemRecord(index=0, attempts=1, result={"v": 1},
                                                                       finished_at=b.now)),
        *(batchledger.Outcome(index=i, code="f", record=batch.ItemRecord(
            index=i, attempts=4, error={"type": "PermanentError", "message": f"doc {i} unreadable"},
            finished_at=b.now)) for i in (1, 2)),
    ])  # fmt: skip

    failed = _cli(platform, "items", "cli", "-n", namespace, "--phase", "Failed")
    assert failed.returncode == 0, failed.stderr
    header, *rows = failed.stdout.splitlines()
    assert header.split() == ["INDEX", "PHASE", "ATTEMPTS", "FINISHED", "ERROR", "/", "RESULT"]
    assert [r.split()[:4] for r in rows] == [[str(i), "Failed", "4", batch.iso(b.now)] for i in (1, 2)]
    assert rows[0].endswith("PermanentError: doc 1 unreadable")

    some = _cli(platform, "items", "cli", "-n", namespace, "--limit", "1500", "-o", "json")
    assert [e["index"] for e in json.loads(some.stdout)] == list(range(1500)), "two pages, then --limit"
    every = json.loads(_cli(platform, "items", "cli", "-n", namespace, "-o", "json").stdout)
    assert [e["index"] for e in every] == list(range(total)) and every[0]["result"] == {"v": 1}
    assert {e["phase"] for e in every[3:]} == {"Queued"}

    missing = _cli(platform, "items", "nothing-here", "-n", namespace)
    assert missing.returncode == 1 and "error 404" in missing.stderr


def test_a_real_batch_through_the_gateway_lists_its_outcomes(platform, kubectl, namespace):
    failing = {5, 600, 1100}
    items = [
        {"value": i, **({"fail": True} if i in failing else {})} for i in range(models.INLINE_ITEMS_MAX + 200)
    ]
    body = {
        "name": "real",
        "spec": {"task": "demo.echo", "retry": {"maxRetries": 0}, "parallelism": 4},
        "items": items,
    }
    answer = _post(platform, namespace, body)
    assert answer.status_code == 202, answer.text
    assert "itemsFrom" in lt.get(kubectl, namespace, "real")["spec"], (
        "stored by the gateway, run by the workers"
    )
    status = lt.wait_phase(kubectl, namespace, "real", "Failed", timeout=180)
    assert status["items"]["failed"] == 3 and status["items"]["succeeded"] == len(items) - 3

    failed = _all(platform, namespace, "real", phase="Failed")
    assert [(e["index"], e["attempts"], e["error"]["type"]) for e in failed] == [
        (i, 1, "PermanentError") for i in sorted(failing)
    ]
    assert all(e["finishedAt"] for e in failed)
    every = _all(platform, namespace, "real", limit=1000)
    assert [e["index"] for e in every] == list(range(len(items)))
    assert all(
        e["phase"] == "Succeeded" and e["result"] == e["index"] for e in every if e["index"] not in failing
    )


def test_the_cli_submits_a_batch_from_a_file(platform, kubectl, namespace, tmp_path):
    lines = tmp_path / "items.jsonl"
    lines.write_text("".join(json.dumps({"value": i}) + "\n" for i in range(models.INLINE_ITEMS_MAX + 1)))
    pool = f"nobody-{uuid.uuid4().hex[:6]}"
    made = _cli(platform, "submit", "demo.echo", "--items", str(lines), "--name", "from-file", "--pool", pool,
                "-n", namespace)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (
        lt.get(kubectl, namespace, "from-file")["spec"]["itemsFrom"]["count"] == models.INLINE_ITEMS_MAX + 1
    )

    array = tmp_path / "items.json"
    array.write_text(json.dumps([{"value": i} for i in range(5)]))
    watched = _cli(
        platform, "submit", "demo.echo", "--items", str(array), "--name", "small", "-n", namespace, "--watch"
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "Succeeded" in watched.stdout.splitlines()[-1]
    assert [e["result"] for e in _all(platform, namespace, "small")] == list(range(5))

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"value": 1}\nnot json\n')
    refused = _cli(platform, "submit", "demo.echo", "--items", str(broken), "-n", namespace)
    assert refused.returncode != 0 and "not a JSON array nor JSON Lines" in refused.stderr
    missing = _cli(
        platform, "submit", "demo.echo", "--items", str(array.with_name("odd.json")), "-n", namespace
    )
    assert missing.returncode != 0 and "odd.json" in missing.stderr and "Traceback" not in missing.stderr
