"""What the status sync keeps of a parked task (statusheld.py).

Covers: the events waiting for a task's status fold to the same status as all of them,
merged or not, and stay few (one per attempt's run of progress reports); a held record
restores the task as the sync followed it, to be written (or first read) and released.
"""

from __future__ import annotations

import time

from longtask_contracts import events
from longtask_operator import fold, statusheld, statuswrites

K = events.Kind


def _event(kind: events.Kind, **fields: object) -> events.TaskEvent:
    return events.TaskEvent(kind=kind, namespace="ns", name="t", uid="u", **fields)  # type: ignore[arg-type]


def _fold_all(status: dict[str, object], evs: list[events.TaskEvent]) -> dict[str, object]:
    for event in evs:
        status = fold.fold(status, event) or status
    return status


def test_waiting_events_stay_few_and_fold_alike():
    evs = [_event(K.STARTED, attempt=1, worker="w", at=1.0)]
    evs += [_event(K.PROGRESS, attempt=1, progress=i, message=f"m{i}" if i % 2 else None) for i in range(50)]
    evs += [_event(K.PROGRESS, attempt=1, step="last")]
    evs += [_event(K.RETRYING, attempt=1, error={"type": "E", "message": "x"}, retry_at=5.0, at=2.0)]
    evs += [_event(K.QUEUED, attempt=2, at=3.0), _event(K.STARTED, attempt=2, worker="v", at=4.0)]
    evs += [_event(K.PROGRESS, attempt=2, progress=7), _event(K.PROGRESS, attempt=2, message="late")]
    waiting: list[events.TaskEvent] = []
    for event in evs:
        waiting = statusheld.wait(waiting, event)
    assert [e.kind for e in waiting] == [K.STARTED, K.PROGRESS, K.RETRYING, K.QUEUED, K.STARTED, K.PROGRESS]
    base = {"phase": "Queued", "attempts": 0}
    assert _fold_all(base, waiting) == _fold_all(base, evs)
    assert waiting[1].message == "m49" and waiting[1].step == "last" and waiting[1].progress == 49


def test_a_held_record_restores_the_task_to_write():
    task = statuswrites.TaskState("ns", "t", status={"phase": "Running"}, last_written={"phase": "Queued"})
    restored = statusheld.restore(statusheld.record(task), now=time.monotonic())
    assert (restored.namespace, restored.name, restored.status) == ("ns", "t", {"phase": "Running"})
    assert restored.loaded and restored.dirty and restored.held and restored.synced
    assert restored.last_written == {"phase": "Queued"}


def test_a_held_record_of_an_unread_task_keeps_its_waiting_events():
    task = statuswrites.TaskState("ns", "t", status={}, loaded=False)
    task.waiting = [_event(K.STARTED, attempt=1, worker="w")]
    restored = statusheld.restore(statusheld.record(task), now=time.monotonic())
    assert not restored.loaded and not restored.dirty and restored.held
    assert restored.waiting == task.waiting
