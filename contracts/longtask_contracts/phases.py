"""The LongTask phase machine as data, with pure helpers; no I/O here."""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    PENDING = "Pending"  # created; the operator has not dispatched it yet
    QUEUED = "Queued"  # sent to its pool's queue, waiting for a worker
    RUNNING = "Running"  # a worker runs an attempt and reports progress
    RETRYING = "Retrying"  # an attempt failed with a retryable error; another will follow
    SUCCEEDED = "Succeeded"  # finished with a result
    FAILED = "Failed"  # finished with an error (permanent, or retries exhausted)
    CANCELLED = "Cancelled"  # stopped on request before finishing


TERMINAL: frozenset[Phase] = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})

# Which phase may follow which. A move to the same phase (progress while Running) is allowed.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.QUEUED, Phase.RUNNING, Phase.FAILED, Phase.CANCELLED}),
    Phase.QUEUED: frozenset({Phase.RUNNING, Phase.RETRYING, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}),
    Phase.RUNNING: frozenset({Phase.RETRYING, Phase.QUEUED, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}),
    Phase.RETRYING: frozenset({Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.FAILED: frozenset({Phase.QUEUED}),  # a replay from the dead-letter queue
    Phase.CANCELLED: frozenset(),
}


def parse(value: object) -> Phase:
    """The phase named by a status field; anything missing or unknown counts as Pending."""
    try:
        return Phase(str(value))
    except ValueError:
        return Phase.PENDING


def can_move(current: Phase, new: Phase) -> bool:
    """Whether a status in `current` may become `new` (same phase: yes, unless terminal)."""
    if current == new:
        return current not in TERMINAL
    return new in TRANSITIONS[current]


def is_terminal(phase: Phase) -> bool:
    return phase in TERMINAL
