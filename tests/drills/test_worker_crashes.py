"""Workers that die mid-task lose nothing and run nothing twice.

Covers: SIGKILL of the worker process running a task, five times over a run of 50 tasks:
every task ends Succeeded, each kill shows as exactly one extra attempt (WorkerLost in
the attempt history), and no task runs again after it finished; a task that kills its
own worker every time is dead-lettered after maxRetries with no further runs, and a
replay after the fix succeeds.
"""

from __future__ import annotations

import os
import signal

import pytest

from longtask_contracts import names
from tests import helpers, lt
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster
FAST_RETRY = {"backoffSeconds": 0.2, "maxBackoffSeconds": 1, "jitter": 0}


def _running(redis_client, uids: set[str], skip: set[str]) -> tuple[str, int] | None:
    """A (uid, pid) of one of `uids` whose worker holds its lease right now and is mid-task."""
    for uid in uids - skip:
        holder = redis_client.get(names.claim(uid))
        if holder and "progress" in lt.kinds(redis_client, uid)[-1:]:
            return uid, int(holder.rsplit("/", 1)[1])
    return None


def test_five_kills_over_fifty_tasks(platform, kubectl, namespace, redis_client, drill_workers):
    uids = {
        lt.create(
            kubectl,
            namespace,
            f"t{i:02d}",
            task="demo.sleep",
            pool=DRILL_POOL,
            retry=FAST_RETRY,
            params={"seconds": 1.2, "steps": 6},
        ): f"t{i:02d}"
        for i in range(50)
    }
    killed: set[str] = set()
    while len(killed) < 5:
        uid, pid = helpers.poll(
            lambda: _running(redis_client, set(uids), killed),
            timeout=60,
            what="a task mid-run",
            interval=0.02,
        )
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.add(uid)
    kubectl(
        "wait", "-n", namespace, "lt", "--all", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=300s"
    )

    total = 0
    for uid, name in uids.items():
        status = lt.status(kubectl, namespace, name)
        expected = 2 if uid in killed else 1
        lost = [h for h in status["attemptHistory"] if h.get("outcome") == "WorkerLost"]
        assert status["attempts"] == expected and len(lost) == expected - 1, (name, status)
        kinds = lt.kinds(redis_client, uid)
        assert kinds.count("started") == expected and kinds[-1] == "succeeded", (name, kinds)
        total += status["attempts"]
    assert total == 55


def test_poison_task_is_dead_lettered_then_replayed_after_a_fix(
    platform, kubectl, namespace, redis_client, drill_workers, tmp_path
):
    fix = tmp_path / "fixed"
    uid = lt.create(
        kubectl,
        namespace,
        "poison",
        task="demo.crash",
        pool=DRILL_POOL,
        params={"unless_exists": str(fix)},
        retry={**FAST_RETRY, "maxRetries": 2},
    )
    status = lt.wait_phase(kubectl, namespace, "poison", "Failed", timeout=90)
    assert status["deadLettered"] is True and status["attempts"] == 3
    assert [h["outcome"] for h in status["attemptHistory"]] == ["WorkerLost"] * 3
    assert redis_client.hexists(names.DLQ, uid)
    assert redis_client.zscore(names.SCHEDULE, uid) is None and redis_client.zscore(names.LEASES, uid) is None
    assert redis_client.llen(names.queue(DRILL_POOL)) == 0, "no further attempt is queued"

    fix.touch()
    kubectl("annotate", "-n", namespace, "lt/poison", "longtask.io/replay=1")
    kubectl("wait", "-n", namespace, "lt/poison", "--for=jsonpath={.status.result}=fixed", "--timeout=60s")
    status = lt.wait_phase(kubectl, namespace, "poison", "Succeeded")
    assert status["replays"] == 1 and status["attempts"] == 4 and status["deadLettered"] is False
    assert not redis_client.hexists(names.DLQ, uid)
    assert lt.starts(redis_client, uid) == 4
