"""WorkerPools scale real worker Deployments by queue depth, sparing busy workers.

Real apiserver, controller manager and scheduler: the operator patches a Deployment's
scale, ReplicaSets make Pods, the local node runs each Pod as a `longtask worker` process.

Covers:
- 40 tasks on a pool with min 0, max 5, 4 tasks per replica bring 5 worker processes up,
  all succeed, and the pool returns to 0 processes after its cooldown; prints the seconds
  from the first task created to the scale patch and to the first task started;
- scale-down with busy and idle workers removes idle pods only; no task restarts;
- bursts every few seconds do not make replicas flap (scale decisions counted);
- a LongTask whose pool has no WorkerPool and no worker queues; a WorkerPool created
  later shows the backlog at once, says its Deployment is missing, and then scales it;
- the WorkerPool status, printer columns, Events and metrics tell what was decided.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from longtask_dev import platform as platform_mod
from longtask_dev import watch as watch_mod
from tests import helpers, lt, pools

pytestmark = pytest.mark.cluster


def _events(kubectl, namespace: str, pool: str) -> list[dict]:
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={pool}", "-o", "json"
    )
    return sorted(json.loads(out.stdout)["items"], key=lambda e: e["metadata"]["creationTimestamp"])


def _workerpool(kubectl, namespace: str, pool: str) -> dict:
    return json.loads(kubectl("get", "-n", namespace, f"wp/{pool}", "-o", "json").stdout)


def _pods(kubectl, namespace: str, pool: str) -> list[dict]:
    out = kubectl("get", "pods", "-n", namespace, "-l", f"longtask.io/pool={pool}", "-o", "json")
    return json.loads(out.stdout)["items"]


def _ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def test_forty_tasks_scale_zero_to_five_and_back(platform, cluster, kubectl, namespace, redis_client):
    pool, deployment = pools.apply_pool(
        platform,
        namespace,
        min_replicas=0,
        max_replicas=5,
        tasks_per_replica=4,
        concurrency=4,
        cooldown_seconds=5,
    )
    watch = watch_mod.Watch(cluster, namespace, f"deployment/{deployment}")
    try:
        helpers.poll(
            lambda: _workerpool(kubectl, namespace, pool).get("status"), timeout=30, what="WorkerPool status"
        )
        created = time.time()
        names = pools.create_many(kubectl, namespace, "burst", 40, task="demo.sleep", pool=pool,
                                  params={"seconds": 4, "steps": 4})  # fmt: skip
        helpers.poll(
            lambda: sum(map(_ready, _pods(kubectl, namespace, pool))) == 5,
            timeout=90,
            what="5 Ready worker pods",
        )
        peak = helpers.poll(
            lambda: (n := pools.worker_processes(pool)) and len(n) == 5 and n,
            timeout=60,
            what="5 worker processes",
        )
        for name in names:
            lt.wait_phase(kubectl, namespace, name, "Succeeded", timeout=120)
        scaled_at = watch.first(lambda d: watch_mod.replicas(d) > 0)
        assert scaled_at is not None
        uids = [lt.get(kubectl, namespace, n)["metadata"]["uid"] for n in names]
        starts = [e for uid in uids for e in lt.stream(redis_client, uid) if e.kind.value == "started"]
        assert len(starts) == 40, "every task ran exactly once"
        first_start = min(e.at for e in starts)
        print(
            f"\nautoscale: first task created -> scale patch seen {scaled_at - created:.2f} s; "
            f"-> first task started on a new worker {first_start - created:.2f} s; peak {len(peak)} processes"
        )
        assert len({e.worker.split("/")[0] for e in starts if e.worker}) >= 2, "work spread over new pods"

        # Cooldown 5 s after the queue drained, the pool goes back to zero processes.
        helpers.poll(lambda: watch_mod.replicas(watch.latest()) == 0, timeout=60, what="scale to zero")
        helpers.poll(lambda: not _pods(kubectl, namespace, pool), timeout=60, what="worker pods gone")
        helpers.poll(lambda: not pools.worker_processes(pool), timeout=30, what="worker processes gone")
    finally:
        watch.close()

    wp = _workerpool(kubectl, namespace, pool)
    assert wp["status"]["pool"] == pool
    assert wp["status"]["desiredReplicas"] == 0
    assert wp["status"]["queued"] == 0 and wp["status"]["running"] == 0
    assert "0 queued + 0 running" in wp["status"]["lastScaleReason"]
    reasons = [e["reason"] for e in _events(kubectl, namespace, pool)]
    assert reasons[0] == "ScaledUp" and reasons[-1] == "ScaledDown"
    # Printer columns show the pool at a glance.
    table = kubectl("get", "-n", namespace, "wp", pool).stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "POOL",
        "DEPLOYMENT",
        "QUEUED",
        "RUNNING",
        "DESIRED",
        "REPLICAS",
        "NAMESPACES",  # blank: the WorkerPool's own namespace only (docs/security.md)
        "AGE",
    ]
    metrics = httpx.get(f"http://127.0.0.1:{platform.operator_metrics_port}/metrics").text
    assert f'longtask_pool_scale_decisions_total{{direction="up",pool="{pool}"}}' in metrics
    assert f'longtask_pool_desired_replicas{{pool="{pool}"}} 0.0' in metrics


def test_scale_down_removes_idle_pods_only(platform, cluster, kubectl, namespace, redis_client):
    pool, deployment = pools.apply_pool(
        platform,
        namespace,
        min_replicas=0,
        max_replicas=4,
        tasks_per_replica=1,
        concurrency=1,
        cooldown_seconds=2,
    )
    long_names = pools.create_many(kubectl, namespace, "long", 2, task="demo.sleep", pool=pool,
                                   params={"seconds": 25, "steps": 25})  # fmt: skip
    short_names = pools.create_many(kubectl, namespace, "short", 2, task="demo.sleep", pool=pool,
                                    params={"seconds": 1, "steps": 1})  # fmt: skip
    for name in short_names:
        lt.wait_phase(kubectl, namespace, name, "Succeeded", timeout=90)
    busy = set()
    for name in long_names:
        status = lt.wait_phase(kubectl, namespace, name, "Running", timeout=90)
        busy.add(status["worker"].split("@", 1)[1].split("/")[0])  # <pool>@<pod>/<pid>
    assert len(busy) == 2
    watch = watch_mod.Watch(cluster, namespace, f"deployment/{deployment}")
    try:
        # The short tasks are done: the need falls to 2 and, after the cooldown, idle pods go.
        helpers.poll(lambda: watch.latest() is not None and watch_mod.replicas(watch.latest()) == 2,
                     timeout=60, what="scale down to the 2 busy pods")  # fmt: skip
        helpers.poll(lambda: len(_pods(kubectl, namespace, pool)) == 2, timeout=60, what="idle pods removed")
        left = {p["metadata"]["name"] for p in _pods(kubectl, namespace, pool)}
        assert left == busy, "the pods that run the long tasks are the ones kept"
        for name in long_names:
            status = lt.wait_phase(kubectl, namespace, name, "Succeeded", timeout=90)
            assert status["attempts"] == 1, "no task restarted"
    finally:
        watch.close()
    for name in long_names:
        uid = lt.get(kubectl, namespace, name)["metadata"]["uid"]
        assert lt.starts(redis_client, uid) == 1


def test_bursts_do_not_make_replicas_flap(platform, kubectl, namespace):
    pool, _ = pools.apply_pool(
        platform,
        namespace,
        min_replicas=0,
        max_replicas=4,
        tasks_per_replica=2,
        concurrency=2,
        cooldown_seconds=15,
    )
    created: list[str] = []
    for burst in range(5):
        created += pools.create_many(kubectl, namespace, f"b{burst}", 4, task="demo.sleep", pool=pool,
                                     params={"seconds": 1, "steps": 1})  # fmt: skip
        # The next burst comes when this one is done: the queue empties between bursts.
        for name in created[-4:]:
            lt.wait_phase(kubectl, namespace, name, "Succeeded", timeout=90)
    decisions = [e["reason"] for e in _events(kubectl, namespace, pool)]
    print(f"\nautoscale bursts: decisions {decisions}")
    assert "ScaledDown" not in decisions, "held through the gaps between bursts"
    assert 1 <= decisions.count("ScaledUp") <= 2


def test_a_pool_without_workers_queues_and_its_workerpool_shows_the_backlog(platform, kubectl, namespace):
    pool = pools.unique_pool()
    lt.create(kubectl, namespace, "waiting", task="demo.noop", pool=pool)
    lt.wait_phase(kubectl, namespace, "waiting", "Queued")
    deployment, workerpool = platform_mod.worker_pool_manifests(
        pool=pool, min_replicas=0, max_replicas=2, concurrency=1
    )
    platform.apply_worker_pool([workerpool], namespace=namespace)
    status = helpers.poll(
        lambda: (
            _workerpool(kubectl, namespace, pool).get("status", {}).get("queued") == 1
            and _workerpool(kubectl, namespace, pool)["status"]
        ),
        timeout=30,
        what="the backlog in the WorkerPool's status",
    )
    assert status["conditions"][0]["reason"] == "DeploymentNotFound"
    assert lt.status(kubectl, namespace, "waiting")["phase"] == "Queued"
    platform.apply_worker_pool([deployment], namespace=namespace)
    lt.wait_phase(kubectl, namespace, "waiting", "Succeeded", timeout=90)
    ready = _workerpool(kubectl, namespace, pool)["status"]["conditions"][0]
    assert (ready["type"], ready["status"]) == ("Ready", "True")
