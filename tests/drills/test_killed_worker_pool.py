"""A worker pod SIGKILLed mid-task does not pin its pool.

Covers: a WorkerPool with min 0 (a real Deployment; the local node runs its pod as a
`longtask worker` process tree) scales up for one task; while the task runs, the pod's
worker processes are all SIGKILLed at once (as the OOM killer or a lost node ends a
container: nothing acknowledges or hands back the message). The task succeeds on its next
attempt (WorkerLost in its history); the pool is back at zero pods one cooldown later
(nothing of the dead attempt still counts); kombu's `unacked` hash holds no entry of the
task.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from longtask_contracts import names
from longtask_dev import watch as watch_mod
from tests import helpers, lt, pools

pytestmark = pytest.mark.cluster
FAST_RETRY = {"backoffSeconds": 0.2, "maxBackoffSeconds": 1, "jitter": 0}


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _parent(int(entry)) == pid:
                    found.append(int(entry))
            except (OSError, ValueError):
                continue
    return found


def _mid_task(redis_client, uid: str) -> bool:
    """Whether a worker holds the task's lease and reported progress."""
    return bool(redis_client.get(names.claim(uid))) and "progress" in lt.kinds(redis_client, uid)[-1:]


def _unacked_of(redis_client, uid: str) -> list[str]:
    """kombu's `unacked` entries of any attempt of `uid` (read here, by the test, body by body)."""
    return [
        tag
        for tag, raw in redis_client.hgetall(names.KOMBU_UNACKED).items()
        if str(json.loads(raw)[0].get("headers", {}).get("id", "")).startswith(f"{uid}.")
    ]


def test_a_worker_pod_killed_mid_task_leaves_nothing_that_pins_its_pool(
    platform, cluster, kubectl, namespace, redis_client
):
    cooldown = 3
    pool, deployment = pools.apply_pool(
        platform,
        namespace,
        min_replicas=0,
        max_replicas=2,
        tasks_per_replica=1,
        concurrency=1,
        cooldown_seconds=cooldown,
        extra_env={"LONGTASK_LEASE_SECONDS": "2"},  # the dead attempt is ended ~2 s after the kill
    )
    watch = watch_mod.Watch(cluster, namespace, f"deployment/{deployment}")
    try:
        uid = lt.create(
            kubectl,
            namespace,
            "victim",
            task="demo.sleep",
            pool=pool,
            retry=FAST_RETRY,
            params={"seconds": 6, "steps": 12},
        )
        helpers.poll(lambda: _mid_task(redis_client, uid), timeout=120, what="the task mid-run")
        (main,) = pools.worker_processes(pool)  # the pool's one pod: its worker and pool process
        tree = [main, *_children(main)]
        assert len(tree) == 2, tree
        for pid in tree:  # freeze the whole pod first: no process of it acts on the others' death
            os.kill(pid, signal.SIGSTOP)
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        for pid in tree:
            helpers.poll(
                lambda pid=pid: not helpers.process_alive(pid), timeout=30, what="worker process gone"
            )

        status = lt.wait_phase(kubectl, namespace, "victim", "Succeeded", timeout=120)
        assert status["attempts"] == 2, status
        assert [h.get("outcome") for h in status["attemptHistory"]][:1] == ["WorkerLost"], status
        assert lt.starts(redis_client, uid) == 2
        succeeded = lt.stream(redis_client, uid)[-1].at

        # One cooldown after the last work ended, the pool is back at zero pods.
        helpers.poll(lambda: watch_mod.replicas(watch.latest()) == 0, timeout=60, what="scale to zero")
        scaled_down = watch.first(lambda d: watch_mod.replicas(d) == 0, since=succeeded)
        assert scaled_down is not None, "scaled to zero after the task succeeded"
        helpers.poll(lambda: not pools.worker_processes(pool), timeout=60, what="worker processes gone")

        def idle() -> bool:
            status = json.loads(kubectl("get", "-n", namespace, f"wp/{pool}", "-o", "json").stdout)["status"]
            return status.get("running") == 0 and status.get("busyPods") == 0

        helpers.poll(idle, timeout=60, what="the WorkerPool to report nothing running")
    finally:
        watch.close()
    assert _unacked_of(redis_client, uid) == [], "kombu's unacked hash holds no entry of the task"
    assert not redis_client.hexists(names.RUNNING, uid)
