"""An attempt that is no longer the task's changes nothing, and a task ends exactly once.

Covers:
- a worker process paused (SIGSTOP) past its lease: the operator records WorkerLost and
  attempt 2 runs elsewhere; the paused attempt, resumed, neither ends attempt 2's claim
  nor adds a terminal event (one terminal event, from attempt 2);
- tasks whose deadline passes mid-run, with the operator (deadline) and the worker (its
  soft time limit) racing to end them, have exactly one terminal event each, and their
  running attempts stop and release their leases.
"""

from __future__ import annotations

import os
import signal

import pytest

from longtask_contracts import events, names
from tests import helpers, lt
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster


def _terminal(redis_client, uid: str) -> list[events.TaskEvent]:
    return [e for e in lt.stream(redis_client, uid) if e.terminal]


def test_a_paused_attempt_resumed_late_changes_nothing(
    platform, kubectl, namespace, redis_client, drill_workers
):
    uid = lt.create(
        kubectl, namespace, "paused", task="demo.sleep", pool=DRILL_POOL,
        params={"seconds": 6, "steps": 12}, retry={"backoffSeconds": 0.2, "jitter": 0},
    )  # fmt: skip
    status = lt.wait_phase(kubectl, namespace, "paused", "Running")
    pid = int(status["worker"].rsplit("/", 1)[1])
    os.kill(pid, signal.SIGSTOP)
    try:
        helpers.poll(
            lambda: (redis_client.get(names.claim(uid)) or "").startswith("2:"),
            timeout=30,
            what="attempt 2 to hold the lease",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    status = lt.wait_phase(kubectl, namespace, "paused", "Succeeded", timeout=60)
    assert status["attempts"] == 2
    assert status["attemptHistory"][0]["outcome"] == "WorkerLost"
    ends = _terminal(redis_client, uid)
    assert [(e.kind, e.attempt) for e in ends] == [(events.Kind.SUCCEEDED, 2)]
    helpers.poll(lambda: not redis_client.exists(names.claim(uid)), timeout=30, what="every lease released")
    assert _terminal(redis_client, uid) == ends, "nothing ended the task again afterwards"


def test_a_deadline_mid_run_gives_exactly_one_terminal_event(
    platform, kubectl, namespace, redis_client, drill_workers
):
    uids = [
        lt.create(
            kubectl,
            namespace,
            f"late-{i}",
            task="demo.sleep",
            pool=DRILL_POOL,
            params={"seconds": 30, "steps": 60},
            timeoutSeconds=2,
        )
        for i in range(4)
    ]
    for i in range(4):
        status = lt.wait_phase(kubectl, namespace, f"late-{i}", "Failed", timeout=60)
        assert status["error"]["type"] == "DeadlineExceeded"
    for uid in uids:
        helpers.poll(
            lambda uid=uid: not redis_client.exists(names.claim(uid)), timeout=30, what="lease released"
        )
        ends = _terminal(redis_client, uid)
        assert len(ends) == 1, [(e.kind, e.error) for e in ends]
