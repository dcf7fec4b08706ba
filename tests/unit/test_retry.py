"""Backoff and retry decisions (pure), table-driven."""

from __future__ import annotations

import pytest

from longtask_contracts import models, retry

POLICY = models.RetryPolicy(
    max_retries=3, backoff_seconds=2, backoff_factor=2, max_backoff_seconds=10, jitter=0.5
)


@pytest.mark.parametrize(
    ("n", "rand", "expected"),
    [
        (1, 0.5, 2.0),  # no jitter at rand 0.5
        (2, 0.5, 4.0),
        (3, 0.5, 8.0),
        (4, 0.5, 10.0),  # capped
        (1, 0.0, 1.0),  # -50 %
        (1, 0.999999, 3.0),  # +50 %
        (4, 0.999999, 10.0),  # jitter never exceeds the cap
    ],
)
def test_backoff(n, rand, expected):
    assert retry.backoff(POLICY, n, rand) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "outcome", "reason"),
    [
        ({"attempt": 1}, retry.Outcome.RETRY, ""),
        ({"attempt": 3}, retry.Outcome.RETRY, ""),
        ({"attempt": 4}, retry.Outcome.DEAD_LETTER, "RetriesExhausted"),
        ({"attempt": 1, "permanent": True}, retry.Outcome.FAIL, "Permanent"),
        ({"attempt": 1, "crashes": 3}, retry.Outcome.DEAD_LETTER, "Poison"),
        ({"attempt": 1, "crashes": 2}, retry.Outcome.RETRY, ""),
        ({"attempt": 1, "deadline": 101.0}, retry.Outcome.FAIL, "DeadlineExceeded"),
    ],
)
def test_decide(kwargs, outcome, reason):
    args = {"policy": POLICY, "now": 100.0, "deadline": 1000.0, "rand": 0.5, **kwargs}
    decision = retry.decide(**args)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    if outcome is retry.Outcome.RETRY:
        assert decision.at == pytest.approx(100.0 + retry.backoff(POLICY, kwargs["attempt"], 0.5))
