"""An operator killed at the worst moments neither loses nor double-runs a task.

Covers: SIGKILL right after dispatch (message sent, status possibly not yet written),
then a restart: the task ends Succeeded, started exactly once, attempts 1; SIGKILL while
the task runs (status-stream entries not yet acknowledged): the restarted operator
converges the status to Succeeded with progress 100, even under another consumer name
(as a replacement pod would have): it adopts the entries its predecessor left unacked.
"""

from __future__ import annotations

import pytest

from longtask_contracts import names
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
        lambda: redis_client.exists(names.dispatch_guard(uid)),
        timeout=30,
        what="the dispatch guard",
        interval=0.005,
    )
    _finish_while_operator_is_down(platform, redis_client, uid)
    status = lt.wait_phase(kubectl, namespace, "crash-dispatch", "Succeeded")
    assert status["attempts"] == 1
    assert lt.starts(redis_client, uid) == 1


def test_kill_while_running_converges_after_restart(platform, kubectl, namespace, redis_client):
    uid = lt.create(kubectl, namespace, "crash-running", task="demo.sleep", params={"seconds": 3, "steps": 6})
    lt.wait_phase(kubectl, namespace, "crash-running", "Running")
    _finish_while_operator_is_down(platform, redis_client, uid, consumer=f"replacement-{uid[:8]}")
    status = lt.wait_phase(kubectl, namespace, "crash-running", "Succeeded")
    assert status["progress"] == 100 and status["attempts"] == 1
    assert lt.starts(redis_client, uid) == 1
