"""Retries follow the configured backoff, read from the recorded attempt times.

Covers: a task failing with a retryable error is retried maxRetries times; each retry is
scheduled backoffSeconds * backoffFactor^(n-1) after the failure (jitter 0) and starts
soon after it is due, never before; then it is dead-lettered. A permanent error fails at
once, without retries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from longtask_contracts import events
from tests import lt, pools
from tests.drills.conftest import DRILL_ENV

pytestmark = pytest.mark.cluster
K = events.Kind


@pytest.fixture(scope="module")
def pool(platform) -> Iterator[str]:
    """A pool and workers of this module's own: attempt times must not wait on a slot that
    another drill's leftovers hold."""
    name = pools.unique_pool()
    workers = [platform.start_worker(pool=name, concurrency=2, extra_env=DRILL_ENV) for _ in range(2)]
    yield name
    for worker in workers:
        if worker in platform.cluster.children:
            platform.stop_child(worker)


def test_retries_follow_exponential_backoff(platform, kubectl, namespace, redis_client, pool):
    uid = lt.create(
        kubectl,
        namespace,
        "flaky",
        task="demo.fail",
        pool=pool,
        retry={"maxRetries": 3, "backoffSeconds": 0.5, "backoffFactor": 2, "jitter": 0},
    )
    status = lt.wait_phase(kubectl, namespace, "flaky", "Failed", timeout=120)
    assert status["attempts"] == 4 and status["deadLettered"] is True
    assert [h["outcome"] for h in status["attemptHistory"]] == ["Retrying"] * 3 + ["Failed"]

    stream = lt.stream(redis_client, uid)
    retries = [e for e in stream if e.kind == K.RETRYING]
    starts = {e.attempt: e for e in stream if e.kind == K.STARTED}
    assert [e.attempt for e in retries] == [1, 2, 3]
    for event in retries:
        assert event.retry_at is not None
        assert event.retry_at - event.at == pytest.approx(0.5 * 2 ** (event.attempt - 1), abs=0.05)
        started = starts[event.attempt + 1].at
        # Never early; late by at most a maintenance tick plus a dispatch, with slack for a busy machine.
        assert event.retry_at - 0.01 <= started <= event.retry_at + 3.0


def test_permanent_error_fails_at_once(platform, kubectl, namespace, redis_client, pool):
    uid = lt.create(
        kubectl,
        namespace,
        "broken",
        task="demo.fail",
        pool=pool,
        params={"permanent": True, "message": "the input is unreadable"},
    )
    status = lt.wait_phase(kubectl, namespace, "broken", "Failed")
    assert status["attempts"] == 1 and not status.get("deadLettered")
    assert status["error"] == {"type": "PermanentError", "message": "the input is unreadable"}
    assert lt.kinds(redis_client, uid).count("retrying") == 0
