"""Deadlines: the whole task's timeoutSeconds and one attempt's attemptTimeoutSeconds.

Covers: a task running past timeoutSeconds ends Failed with DeadlineExceeded and its
running attempt is stopped; an attempt running past attemptTimeoutSeconds gets the soft
signal, is recorded as AttemptTimeout and retried, and the status says which limit hit.
"""

from __future__ import annotations

import pytest

from longtask_contracts import names
from tests import helpers, lt
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster


def test_whole_task_deadline(platform, kubectl, namespace, redis_client, drill_workers):
    uid = lt.create(
        kubectl,
        namespace,
        "slow",
        task="demo.sleep",
        pool=DRILL_POOL,
        params={"seconds": 60, "steps": 60},
        timeoutSeconds=3,
    )
    status = lt.wait_phase(kubectl, namespace, "slow", "Failed", timeout=30)
    assert (
        status["error"]["type"] == "DeadlineExceeded" and "timeoutSeconds (3)" in status["error"]["message"]
    )
    helpers.poll(lambda: not redis_client.exists(names.claim(uid)), timeout=15, what="the attempt to stop")


def test_attempt_timeout_is_retried_then_dead_lettered(platform, kubectl, namespace, drill_workers):
    lt.create(
        kubectl,
        namespace,
        "stuck",
        task="demo.sleep",
        pool=DRILL_POOL,
        params={"seconds": 30, "steps": 3},
        attemptTimeoutSeconds=1,
        retry={"maxRetries": 1, "backoffSeconds": 0.2, "jitter": 0},
    )
    status = lt.wait_phase(kubectl, namespace, "stuck", "Failed", timeout=60)
    assert [h["error"]["type"] for h in status["attemptHistory"]] == ["AttemptTimeout", "AttemptTimeout"]
    assert status["deadLettered"] is True
