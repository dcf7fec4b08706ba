"""Retry decisions: exponential backoff with jitter, poison and deadline rules; pure functions.

An attempt ends badly in one of three ways: a permanent error (fail now), a retryable
error, or a crash (the worker died: its lease ran out). decide() says what follows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from longtask_contracts import models


class Outcome(enum.StrEnum):
    RETRY = "retry"  # another attempt at `at`
    FAIL = "fail"  # Failed, not dead-lettered (permanent error, deadline)
    DEAD_LETTER = "dead_letter"  # Failed and parked in the dead-letter queue (replayable)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    at: float | None = None  # when the next attempt is due (RETRY only)
    reason: str = ""  # why it gives up: Permanent, RetriesExhausted, Poison, DeadlineExceeded


def backoff(policy: models.RetryPolicy, retry_number: int, rand: float) -> float:
    """Seconds before retry number `retry_number` (1-based); `rand` is uniform in [0, 1).

    backoffSeconds * backoffFactor^(n-1), capped at maxBackoffSeconds, then moved by up to
    ±jitter of itself, and capped again.
    """
    base = min(
        policy.backoff_seconds * policy.backoff_factor ** (retry_number - 1), policy.max_backoff_seconds
    )
    spread = policy.jitter * base * (2 * rand - 1)
    return max(0.0, min(base + spread, policy.max_backoff_seconds))


def decide(
    *,
    policy: models.RetryPolicy,
    attempt: int,
    now: float,
    deadline: float | None,
    rand: float,
    permanent: bool = False,
    crashes: int = 0,
    poison_crashes: int = 3,
) -> Decision:
    """What follows attempt number `attempt` (1-based) ending badly at `now`."""
    if permanent:
        return Decision(Outcome.FAIL, reason="Permanent")
    if crashes >= poison_crashes:
        return Decision(Outcome.DEAD_LETTER, reason="Poison")
    if attempt > policy.max_retries:
        return Decision(Outcome.DEAD_LETTER, reason="RetriesExhausted")
    at = now + backoff(policy, attempt, rand)
    if deadline is not None and at >= deadline:
        return Decision(Outcome.FAIL, reason="DeadlineExceeded")
    return Decision(Outcome.RETRY, at=at)
