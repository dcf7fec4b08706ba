"""An operator killed at the worst moments neither loses nor double-runs a task.

Covers: SIGKILL right after dispatch (message sent, status possibly not yet written),
then a restart: the task ends Succeeded, started exactly once, attempts 1; a first send
that died half-way (guard taken, nothing sent) is sent by the sweep once the guard runs
out; SIGKILL while
the task runs (status-stream entries not yet acknowledged): the restarted operator
converges the status to Succeeded with progress 100, even under another consumer name
(as a replacement pod would have): it adopts the entries its predecessor left unacked.
"""

from __future__ import annotations

import pytest

from longtask_contracts import names
from longtask_runtime import sending
from tests import helpers, lt

pytestmark = pytest.mark.cluster


def _finish_while_operator_is_down(platform, redis_client, uid: str, consumer: str | None = None) -> None:
    platform.kill_operator()
    try:
        helpers.poll(
            lambda: redis_client.exists(names.done(uid)),
            timeout=30,
            what="the worker to finish while the operator is down",
        )
    finally:
        platform.start_operator(extra_env={"LONGTASK_CONSUMER": consumer} if consumer else None)


def test_kill_between_dispatch_and_status_update(platform, kubectl, namespace, redis_client):
    uid = lt.create(
        kubectl, namespace, "crash-dispatch", task="demo.sleep", params={"seconds": 1, "steps": 2}
    )
    helpers.poll(
        lambda: redis_client.get(names.dispatch_guard(uid)) == sending.SENT,
        timeout=30,
        what="the dispatch guard to say the first attempt was sent",
        interval=0.005,
    )
    _finish_while_operator_is_down(platform, redis_client, uid)
    status = lt.wait_phase(kubectl, namespace, "crash-dispatch", "Succeeded")
    assert status["attempts"] == 1
    assert lt.starts(redis_client, uid) == 1


def test_a_sender_that_died_mid_send_is_taken_over(platform, kubectl, namespace, redis_client):
    """A guard left at "sending" by a sender that died before sending (here: written by
    hand while the operator is down) runs out; the operator's sweep then sends the task."""
    platform.kill_operator()
    try:
        uid = lt.create(kubectl, namespace, "half-sent", task="demo.noop")
        redis_client.set(names.dispatch_guard(uid), sending.SENDING, ex=2)
    finally:
        platform.start_operator(extra_env={"LONGTASK_SWEEP_SECONDS": "1"})
    status = lt.wait_phase(kubectl, namespace, "half-sent", "Succeeded", timeout=90)
    assert status["attempts"] == 1 and lt.starts(redis_client, uid) == 1


def test_kill_while_running_converges_after_restart(platform, kubectl, namespace, redis_client):
    uid = lt.create(kubectl, namespace, "crash-running", task="demo.sleep", params={"seconds": 3, "steps": 6})
    lt.wait_phase(kubectl, namespace, "crash-running", "Running")
    _finish_while_operator_is_down(platform, redis_client, uid, consumer=f"replacement-{uid[:8]}")
    status = lt.wait_phase(kubectl, namespace, "crash-running", "Succeeded")
    assert status["progress"] == 100 and status["attempts"] == 1
    assert lt.starts(redis_client, uid) == 1
