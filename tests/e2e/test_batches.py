"""Batches end to end (kubectl, the real operator, worker processes and Redis): one LongTask
with spec.items runs each item, counts them in status.items, records each item's result or
error, fails on failed items with their indexes, cancels, and replays only its failed items.
"""

from __future__ import annotations

import json

import pytest

from longtask_contracts import batch, models, names
from tests import helpers

pytestmark = pytest.mark.cluster


def _batch(name: str, items: list[dict], **spec: object) -> str:
    body = {
        "apiVersion": "longtask.io/v1alpha1",
        "kind": "LongTask",
        "metadata": {"name": name},
        "spec": {"task": "demo.echo", "items": items, "retry": {"maxRetries": 0}, **spec},
    }
    return json.dumps(body)


def _status(kubectl, namespace: str, name: str) -> dict:
    return json.loads(kubectl("get", "-n", namespace, f"lt/{name}", "-o", "json").stdout)


def _wait(kubectl, namespace: str, name: str, phase: str, timeout: int = 90) -> dict:
    kubectl(
        "wait",
        "-n",
        namespace,
        f"lt/{name}",
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"--timeout={timeout}s",
    )
    return _status(kubectl, namespace, name)


def _records(redis_client, uid: str) -> dict[int, batch.ItemRecord]:
    raw = redis_client.hgetall(names.items_records(uid))
    return {int(k): batch.ItemRecord.model_validate_json(v) for k, v in raw.items()}


def test_batch_runs_every_item_once_and_counts_them(platform, kubectl, namespace, redis_client):
    items = [{"value": i} for i in range(300)]
    kubectl("create", "-n", namespace, "-f", "-", input=_batch("many", items, parallelism=4))
    obj = _wait(kubectl, namespace, "many", "Succeeded")
    status = obj["status"]
    assert status["items"]["total"] == 300
    assert status["items"]["succeeded"] == 300
    assert (
        status["items"]["failed"] == 0 and status["items"]["queued"] == 0 and status["items"]["running"] == 0
    )
    assert status["progress"] == 100
    assert status["itemsText"] == "300/300"
    records = _records(redis_client, obj["metadata"]["uid"])
    assert sorted(records) == list(range(300))
    assert all(r.phase == batch.ItemPhase.SUCCEEDED and r.attempts == 1 for r in records.values())
    assert [records[i].result for i in range(300)] == list(range(300))  # params merged with each item

    table = kubectl("get", "lt", "-n", namespace, "many").stdout
    assert "300/300" in table


def test_failed_items_fail_the_batch_with_their_indexes(platform, kubectl, namespace, redis_client):
    items = [{"value": i, "fail": i in (3, 7, 8, 9)} for i in range(20)]
    kubectl("create", "-n", namespace, "-f", "-", input=_batch("some-fail", items, parallelism=3))
    status = _wait(kubectl, namespace, "some-fail", "Failed")["status"]
    assert status["items"]["succeeded"] == 16
    assert status["items"]["failed"] == 4
    assert status["items"]["failedIndexes"] == "3,7-9"
    assert status["error"]["type"] == "ItemsFailed"
    assert status["deadLettered"] is True
    uid = _status(kubectl, namespace, "some-fail")["metadata"]["uid"]
    records = _records(redis_client, uid)
    assert records[7].phase == batch.ItemPhase.FAILED
    assert records[7].error is not None and "asked to fail" in records[7].error["message"]


def test_max_failed_items_ends_the_batch_early(platform, kubectl, namespace):
    items = [{"value": i, "fail": True} for i in range(200)]
    kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=_batch("stop-early", items, parallelism=1, maxFailedItems=2),
    )
    status = _wait(kubectl, namespace, "stop-early", "Failed")["status"]
    assert status["error"]["type"] == "MaxFailedItemsExceeded"
    assert status["items"]["failed"] >= 3
    assert status["items"]["cancelled"] > 0
    assert status["items"]["failed"] + status["items"]["cancelled"] == 200


def test_cancel_stops_a_running_batch(platform, kubectl, namespace, redis_client):
    items = [{"value": i, "seconds": 0.2} for i in range(200)]
    kubectl("create", "-n", namespace, "-f", "-", input=_batch("cancel-me", items, parallelism=2))
    helpers.poll(
        lambda: (
            (_status(kubectl, namespace, "cancel-me").get("status") or {})
            .get("items", {})
            .get("succeeded", 0)
            > 0
        ),
        timeout=60,
        what="some items to succeed",
    )
    kubectl("patch", "-n", namespace, "lt/cancel-me", "--type=merge", "-p", '{"spec":{"cancel":true}}')
    obj = _wait(kubectl, namespace, "cancel-me", "Cancelled")
    items_status = obj["status"]["items"]
    assert items_status["cancelled"] > 0
    assert items_status["succeeded"] + items_status["cancelled"] == 200
    # Nothing starts once the batch says Cancelled: no record changes after that.
    records = _records(redis_client, obj["metadata"]["uid"])
    assert len(records) == items_status["succeeded"] + sum(
        1 for r in records.values() if r.phase != batch.ItemPhase.SUCCEEDED
    )
    assert redis_client.hlen(names.items_records(obj["metadata"]["uid"])) == len(records)


def test_replay_reruns_only_the_failed_items(platform, kubectl, namespace, redis_client):
    items = [{"value": i, "fail": i == 5} for i in range(10)]
    kubectl("create", "-n", namespace, "-f", "-", input=_batch("replay-me", items))
    obj = _wait(kubectl, namespace, "replay-me", "Failed")
    uid = obj["metadata"]["uid"]
    before = _records(redis_client, uid)
    # Fix item 5 (its input now says succeed), then replay through the annotation.
    redis_client.hset(names.items_inputs(uid), "5", json.dumps({"value": 5}))
    kubectl("annotate", "-n", namespace, "lt/replay-me", f"{names.REPLAY_ANNOTATION}=1")
    obj = _wait(kubectl, namespace, "replay-me", "Succeeded")
    after = _records(redis_client, uid)
    assert obj["status"]["items"]["succeeded"] == 10
    assert after[5].phase == batch.ItemPhase.SUCCEEDED
    for i in range(10):
        if i != 5:
            assert after[i].finished_at == before[i].finished_at  # not run again


def test_an_item_over_the_size_limit_fails_the_task_naming_it(platform, kubectl, namespace, redis_client):
    # The schema cannot count an item's bytes; the operator fails it before anything runs.
    items = [{"value": 1}, {"value": "x" * (models.ITEM_MAX_BYTES + 10)}]
    kubectl("create", "-n", namespace, "-f", "-", input=_batch("too-big", items))
    obj = _wait(kubectl, namespace, "too-big", "Failed")
    assert obj["status"]["error"]["type"] == "InvalidSpec"
    assert "items[1]" in obj["status"]["error"]["message"]
    assert not redis_client.exists(names.batch(obj["metadata"]["uid"]))  # nothing started
    described = kubectl("describe", "-n", namespace, "lt/too-big").stdout
    assert "InvalidSpec" in described
