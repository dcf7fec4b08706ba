"""Teams cannot use each other's pools: a WorkerPool claims its pool for its namespace.

Covers, with the real operator, gateway, apiserver and a worker serving the pool: two
WorkerPools in namespace B claim one pool, and the newer (created later, though its name
sorts first) shows Conflict=True beside the autoscaler's Ready condition, the older none
(and `kubectl get wp -o wide` shows the columns, `kubectl explain` the field, and the
apiserver refuses a selector Kubernetes would not accept); a LongTask of
namespace A created with kubectl naming the pool ends Failed with PoolNotAllowed, a
message naming the pool and namespace A, and a Warning Event, and is never sent (no
Queued event, no current attempt, no start); the gateway refuses the same create with a
403 Problem naming both and creates nothing; B's own task on the pool succeeds; once
B's WorkerPool admits A by a label of A's namespace (namespaceSelector), A's next tasks
run, through the gateway and through kubectl; once the older WorkerPool is deleted, the
newer holds the pool and its Conflict turns False.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from longtask_contracts import names
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import helpers, lt, pools

pytestmark = pytest.mark.cluster


@pytest.fixture
def other_namespace(cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def pool(platform: platform_mod.Platform) -> Iterator[str]:
    """A pool nobody else uses, with a worker started by hand serving it."""
    name = pools.unique_pool()
    worker = platform.start_worker(pool=name, concurrency=2)
    yield name
    platform.stop_child(worker)


def _workerpool(kubectl, namespace: str, name: str, pool: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.POOL_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"deployment": f"{name}-workers", "pool": pool, "minReplicas": 0, "maxReplicas": 0, **spec},
    }
    out = kubectl("create", "-f", "-", "-o", "json", input=yaml.safe_dump(body))
    created: dict[str, Any] = json.loads(out.stdout)
    return created


def _conditions(kubectl, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    obj = json.loads(kubectl("get", "-n", namespace, f"wp/{name}", "-o", "json").stdout)
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _post(api_url: str, namespace: str, name: str, pool: str) -> httpx.Response:
    return httpx.post(
        f"{api_url}/v1/namespaces/{namespace}/tasks",
        json={"name": name, "spec": {"task": "demo.noop", "pool": pool}},
        timeout=30,
    )


def _events(kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_a_pool_only_namespace_b_admits_never_runs_namespace_as_tasks(
    platform, kubectl, namespace, other_namespace, pool, redis_client
):
    team_a, team_b = namespace, other_namespace
    # The older claim, then (a second later, so that the creationTimestamps differ) a newer
    # one whose name sorts first: age decides, not the name.
    older = _workerpool(kubectl, team_b, "z-older", pool)
    created = datetime.datetime.fromisoformat(older["metadata"]["creationTimestamp"])
    procs.wait_until(
        lambda: datetime.datetime.now(datetime.UTC) >= created + datetime.timedelta(seconds=1.1),
        timeout=5,
        what="the next second",
    )
    _workerpool(kubectl, team_b, "a-newer", pool)
    # The operator saw both claims (it wrote the newer's Conflict), next to the autoscaler's Ready.
    conditions = helpers.poll(
        lambda: (
            (c := _conditions(kubectl, team_b, "a-newer")).get("Conflict", {}).get("status") == "True"
            and "Ready" in c
            and c
        ),
        timeout=60,
        what="Conflict=True on the newer WorkerPool, beside Ready",
    )
    assert conditions["Conflict"]["reason"] == "PoolClaimedElsewhere"
    assert f"WorkerPool {team_b}/z-older" in conditions["Conflict"]["message"]
    assert "Conflict" not in _conditions(kubectl, team_b, "z-older"), "the holder carries none"
    header, row = kubectl("get", "wp", "-n", team_b, "a-newer", "-o", "wide").stdout.splitlines()
    column = header.index("NAMESPACES")
    assert row[column : header.index("CONFLICT")].strip() == "", row  # blank: its own namespace only
    assert row[header.index("CONFLICT") :].split()[0] == "True", row
    explain = kubectl("explain", "workerpool.spec.namespaceSelector").stdout
    assert "Kueue" in explain and "matchExpressions" in explain

    # The apiserver refuses a selector Kubernetes would not accept either.
    for expression, complaint in [
        ({"key": "team", "operator": "In"}, "In and NotIn need values"),
        ({"key": "team", "operator": "Exists", "values": ["a"]}, "Exists and DoesNotExist take none"),
        ({"key": "team", "operator": "Gt", "values": ["1"]}, "supported values"),
    ]:
        bad = {
            "apiVersion": names.API_VERSION,
            "kind": names.POOL_KIND,
            "metadata": {"name": "bad", "namespace": team_b},
            "spec": {"deployment": "d", "namespaceSelector": {"matchExpressions": [expression]}},
        }
        refused_pool = kubectl("create", "-f", "-", input=yaml.safe_dump(bad), check=False)
        assert refused_pool.returncode != 0 and complaint in refused_pool.stderr, refused_pool.stderr

    # kubectl's way: created, then failed without being sent.
    uid = lt.create(kubectl, team_a, "trespass", task="demo.noop", pool=pool)
    status = lt.wait_phase(kubectl, team_a, "trespass", "Failed")
    assert status["error"]["type"] == "PoolNotAllowed", status
    message = status["error"]["message"]
    assert f"pool {pool!r}" in message and f"namespace {team_a!r}" in message
    assert f"WorkerPool {team_b}/z-older" in message
    assert status["message"] == message and status.get("attempts", 0) == 0
    warnings = helpers.poll(
        lambda: [e for e in _events(kubectl, team_a, "trespass") if e["reason"] == "PoolNotAllowed"],
        timeout=30,
        what="the PoolNotAllowed Event",
    )
    assert warnings[0]["type"] == "Warning" and warnings[0]["message"] == message
    assert lt.kinds(redis_client, uid) == ["failed"], "never queued, never started"
    assert redis_client.get(names.current(uid)) is None
    assert redis_client.get(names.dispatch_guard(uid)) == "refused"

    # The gateway's way: refused at create, nothing created.
    refused = _post(platform.api_url, team_a, "trespass-api", pool)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["status"] == 403
    assert f"pool {pool!r}" in problem["detail"] and f"namespace {team_a!r}" in problem["detail"]
    gone = kubectl("get", "-n", team_a, "lt/trespass-api", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    # B's own task runs on B's pool.
    lt.create(kubectl, team_b, "own", task="demo.noop", pool=pool)
    lt.wait_phase(kubectl, team_b, "own", "Succeeded")

    # B opens the pool to namespaces labelled so, and labels A: A's next tasks run.
    label = f"team-{uuid.uuid4().hex[:6]}"
    kubectl("label", "namespace", team_a, f"longtask.io/team={label}")
    selector = {"matchLabels": {"longtask.io/team": label}}
    kubectl(
        "patch", "-n", team_b, "wp/z-older", "--type=merge",
        "-p", json.dumps({"spec": {"namespaceSelector": selector}}),
    )  # fmt: skip
    header, row = kubectl("get", "wp", "-n", team_b, "z-older").stdout.splitlines()
    assert label in row[header.index("NAMESPACES") :], row
    # A refused create makes nothing, so asking until the gateway's watch has the change is safe.
    created_api = helpers.poll(
        lambda: (r := _post(platform.api_url, team_a, "admitted-api", pool)).status_code == 202 and r,
        timeout=30,
        what="the gateway to admit namespace A",
    )
    assert created_api.json()["name"] == "admitted-api"
    lt.wait_phase(kubectl, team_a, "admitted-api", "Succeeded")
    lt.create(kubectl, team_a, "admitted", task="demo.noop", pool=pool)
    lt.wait_phase(kubectl, team_a, "admitted", "Succeeded")
    assert lt.status(kubectl, team_a, "trespass")["phase"] == "Failed", "a refusal stays"

    # The holder goes: the newer WorkerPool holds the pool, and says so.
    kubectl("delete", "-n", team_b, "wp/z-older")
    cleared = helpers.poll(
        lambda: (
            (c := _conditions(kubectl, team_b, "a-newer").get("Conflict", {})).get("status") == "False" and c
        ),
        timeout=60,
        what="Conflict=False once the newer WorkerPool holds the pool",
    )
    assert cleared["reason"] == "PoolHeld"
