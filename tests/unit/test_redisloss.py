"""What the operator sends again for one task after Redis came back with less data (redisloss).

Covers, table-driven: a task Redis shows in hand (done, claimed, forgotten, being sent,
queued, waiting for its retry, a batch with its ledger) gets nothing; a task terminal in
etcd gets nothing; otherwise the first attempt, the same attempt, or a new attempt numbered
after the highest of status.attempts, Redis' started and its current record; a cancel ends
it; the lease set counts only when no reset was seen.
"""

from __future__ import annotations

import dataclasses

import pytest

from longtask_contracts import phases, redisloss

A = redisloss.Action
LOST = redisloss.RedisFacts(
    current=None, done=False, claimed=False, tombstone=False, started=0, guard=None,
    scheduled=False, queued=False, batch=False,
)  # fmt: skip


def facts(**changes: object) -> redisloss.RedisFacts:
    return dataclasses.replace(LOST, **changes)  # type: ignore[arg-type]


def task(
    phase: str = "Queued", attempts: int = 0, *, cancel: bool = False, batch: bool = False
) -> redisloss.TaskFacts:
    return redisloss.TaskFacts(phase=phases.Phase(phase), attempts=attempts, cancel=cancel, is_batch=batch)


@pytest.mark.parametrize(
    ("redis", "etcd", "expected"),
    [
        (facts(done=True), task("Running", 1), (A.NOTHING, 0)),
        (facts(claimed=True, current=1, started=1), task("Running", 1), (A.NOTHING, 0)),
        (facts(tombstone=True), task(), (A.NOTHING, 0)),
        (facts(guard="sending"), task(), (A.NOTHING, 0)),
        (facts(current=1, queued=True, guard="sent"), task(), (A.NOTHING, 0)),
        (facts(current=2, scheduled=True, started=1), task("Retrying", 1), (A.NOTHING, 0)),
        (facts(current=1, batch=True), task("Running", 1, batch=True), (A.NOTHING, 0)),
        (LOST, task("Succeeded", 1), (A.NOTHING, 0)),
        (LOST, task("Pending"), (A.SEND_FIRST, 1)),
        (facts(guard="sent"), task(), (A.NEW_ATTEMPT, 1)),
        (LOST, task("Running", 2), (A.NEW_ATTEMPT, 3)),
        (facts(current=1, guard="sent"), task(), (A.RESEND, 1)),
        (facts(current=3, started=2), task("Retrying", 2), (A.RESEND, 3)),
        (facts(current=1, started=1), task("Running", 1), (A.NEW_ATTEMPT, 2)),
        (facts(current=1, started=1, queued=True), task("Running", 1), (A.NEW_ATTEMPT, 2)),
        (facts(current=2), task("Running", 2), (A.NEW_ATTEMPT, 3)),
        (facts(current=1), task("Running", 1, batch=True), (A.NEW_ATTEMPT, 2)),
        (LOST, task(cancel=True), (A.CANCEL, 0)),
    ],
)
def test_decide(redis: redisloss.RedisFacts, etcd: redisloss.TaskFacts, expected: tuple[A, int]) -> None:
    decision = redisloss.decide(redis, etcd)
    assert (decision.action, decision.attempt) == expected


def test_the_lease_set_counts_only_without_a_reset() -> None:
    stale = facts(current=1, started=1, leased=True)
    assert redisloss.decide(stale, task("Running", 1)).action is A.NEW_ATTEMPT
    assert redisloss.decide(stale, task("Running", 1), trust_leases=True).action is A.NOTHING
