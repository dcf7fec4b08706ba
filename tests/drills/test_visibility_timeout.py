"""A task that outlives the broker's visibility timeout on a live worker runs once.

Covers: with a 2 s visibility timeout and a 1 s restore sweep, Redis hands the unacked
message out again while the task still runs; the redelivery finds the lease held and does
nothing (the worker logs the skip), so the task starts exactly once and succeeds.
"""

from __future__ import annotations

import pytest

from tests import helpers, lt

pytestmark = pytest.mark.cluster


def test_redelivered_message_of_a_live_task_does_not_run_it_again(platform, kubectl, namespace, redis_client):
    worker = platform.start_worker(
        pool="shortvis",
        concurrency=2,
        extra_env={"LONGTASK_VISIBILITY_TIMEOUT_SECONDS": "2", "LONGTASK_RESTORE_INTERVAL_SECONDS": "1"},
    )
    try:
        uid = lt.create(
            kubectl, namespace, "long", task="demo.sleep", pool="shortvis", params={"seconds": 8, "steps": 8}
        )
        helpers.poll(
            lambda: f"skipping {uid}" in worker.log_tail(500),
            timeout=60,
            what="the redelivered message to be skipped",
        )
        status = lt.wait_phase(kubectl, namespace, "long", "Succeeded")
    finally:
        platform.stop_child(worker)
    assert status["attempts"] == 1
    assert lt.starts(redis_client, uid) == 1
