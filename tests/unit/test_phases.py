"""The phase machine: allowed moves, terminal phases, tolerant parsing."""

from __future__ import annotations

import pytest

from longtask_contracts import phases

P = phases.Phase


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (P.PENDING, P.QUEUED, True),
        (P.QUEUED, P.RUNNING, True),
        (P.RUNNING, P.RUNNING, True),  # progress
        (P.RUNNING, P.SUCCEEDED, True),
        (P.RUNNING, P.RETRYING, True),
        (P.RETRYING, P.QUEUED, True),
        (P.SUCCEEDED, P.RUNNING, False),  # a late progress event after the end
        (P.SUCCEEDED, P.SUCCEEDED, False),
        (P.CANCELLED, P.QUEUED, False),
        (P.FAILED, P.QUEUED, True),  # replay from the dead-letter queue
        (P.RUNNING, P.PENDING, False),
    ],
)
def test_moves(current, new, allowed):
    assert phases.can_move(current, new) is allowed


def test_every_phase_has_a_transition_row():
    assert set(phases.TRANSITIONS) == set(P)


@pytest.mark.parametrize(
    ("raw", "phase"), [("Running", P.RUNNING), (None, P.PENDING), ("nonsense", P.PENDING), (42, P.PENDING)]
)
def test_parse_is_tolerant(raw, phase):
    assert phases.parse(raw) is phase
