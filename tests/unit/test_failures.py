"""What follows a failed attempt, the one decision the worker and the operator share.

Covers, as a table: a retryable error retries (a Retrying event with its time and the
error, no dead letter); a permanent error fails at once, not dead-lettered; retries used up
dead-letter the task (a Failed event marked dead-lettered, a record to replay it from); a
crash under the poison limit retries, at the limit dead-letters as Poison; a retry that
would start past the deadline fails as DeadlineExceeded naming the last error; the
operator's reports name no worker.
"""

from __future__ import annotations

import pytest

from longtask_contracts import events, failures, ledger, models, retry

POLICY = models.RetryPolicy(max_retries=2, backoff_seconds=10, backoff_factor=1, jitter=0)
ERROR = {"type": "ValueError", "message": "boom"}
K = events.Kind


def _dispatch(*, attempt: int, deadline: float = 10_000.0) -> ledger.Dispatch:
    spec = models.LongTaskSpec(task="demo.sleep", retry=POLICY, timeout_seconds=600)
    return ledger.Dispatch(namespace="ns", name="t", uid="u", spec=spec, attempt=attempt, deadline=deadline)


@pytest.mark.parametrize(
    ("attempt", "deadline", "kwargs", "outcome", "kind", "reason", "dead"),
    [
        (1, 10_000.0, {}, retry.Outcome.RETRY, K.RETRYING, "", False),
        (2, 10_000.0, {}, retry.Outcome.RETRY, K.RETRYING, "", False),
        (3, 10_000.0, {}, retry.Outcome.DEAD_LETTER, K.FAILED, "RetriesExhausted", True),
        (1, 10_000.0, {"permanent": True}, retry.Outcome.FAIL, K.FAILED, "Permanent", False),
        (1, 10_000.0, {"crashes": 2}, retry.Outcome.RETRY, K.RETRYING, "", False),
        (1, 10_000.0, {"crashes": 3}, retry.Outcome.DEAD_LETTER, K.FAILED, "Poison", True),
        (1, 105.0, {}, retry.Outcome.FAIL, K.FAILED, "DeadlineExceeded", False),
    ],
)
def test_after_failure(attempt, deadline, kwargs, outcome, kind, reason, dead):
    end = failures.after_failure(
        dispatch=_dispatch(attempt=attempt, deadline=deadline),
        error=ERROR,
        now=100.0,
        rand=0.5,
        worker="w-1",
        **kwargs,
    )
    assert (end.decision.outcome, end.decision.reason, end.kind) == (outcome, reason, kind)
    assert end.event.kind == kind and end.event.attempt == attempt and end.event.worker == "w-1"
    assert (end.dead_letter is not None) is dead
    assert end.event.dead_lettered is (True if dead else None)
    if outcome is retry.Outcome.RETRY:
        assert end.decision.at == pytest.approx(110.0)
        assert end.event.retry_at == end.decision.at and end.event.error == ERROR
    if dead:
        assert end.dead_letter is not None
        assert (end.dead_letter.reason, end.dead_letter.attempts, end.dead_letter.error) == (
            reason, attempt, ERROR,
        )  # fmt: skip
    if reason == "DeadlineExceeded":
        assert end.event.error is not None and end.event.error["type"] == "DeadlineExceeded"
        assert "ValueError: boom" in end.event.error["message"]


def test_the_operator_reports_a_lost_worker_as_no_worker():
    end = failures.after_failure(
        dispatch=_dispatch(attempt=1), error=ERROR, now=100.0, rand=0.5, worker=None, crashes=1
    )
    assert end.kind == K.RETRYING and end.event.worker is None
