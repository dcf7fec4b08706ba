"""What the status sync keeps of a stuck task instead of its stream entries; pure, no I/O.

A task whose status cannot be written (its write is parked) or read (its GET is parked)
would otherwise keep every entry of its pending in the status stream, and the stream could
not be trimmed past the first of them. Instead the sync folds them: it stores a *held
record* (the task's folded status, what the apiserver last accepted, and the events it
could not fold yet because its status is still unknown) in names.STATUS_HELD, and
acknowledges the entries in the same MULTI. A restarted operator starts from the held
records, so nothing acknowledged this way is lost.

The events waiting for a status are kept short: consecutive progress reports of one
attempt fold to the same status as their merge (later fields win), so a task's list grows
with its attempts, not with its progress events.

It must not read or write Redis or Kubernetes (statusstream.py stores the records).
"""

from __future__ import annotations

import json
from typing import Any

from longtask_contracts import events
from longtask_operator import statuswrites


def record(task: statuswrites.TaskState) -> str:
    """The held record of `task` (JSON): enough to write its status later without its entries."""
    return json.dumps(
        {
            "namespace": task.namespace,
            "name": task.name,
            "status": task.status if task.loaded else None,  # None: still to be read
            "written": task.last_written,
            "waiting": [e.model_dump(mode="json", exclude_none=True) for e in task.waiting],
        }
    )


def restore(raw: str | bytes, *, now: float) -> statuswrites.TaskState:
    """The task a held record describes, as the sync follows it: to be written (or first
    read, if its status was never known), and released once written."""
    data: dict[str, Any] = json.loads(raw)
    status = data.get("status")
    return statuswrites.TaskState(
        data["namespace"],
        data["name"],
        status=dict(status) if status is not None else {},
        loaded=status is not None,
        waiting=[events.TaskEvent.model_validate(e) for e in data.get("waiting") or []],
        last_written=dict(data.get("written") or {}),
        dirty=status is not None,
        last_write=now,
        synced=True,  # its entries were acknowledged with the record
        held=True,
    )


def wait(waiting: list[events.TaskEvent], event: events.TaskEvent) -> list[events.TaskEvent]:
    """`waiting` with `event` added: merged into the last one when both report progress of
    one attempt (folding the merge gives the same status as folding both)."""
    last = waiting[-1] if waiting else None
    if (
        last is not None
        and last.kind == events.Kind.PROGRESS
        and event.kind == events.Kind.PROGRESS
        and last.attempt == event.attempt
    ):
        later = event.model_dump(exclude_none=True, exclude_defaults=True)
        return [*waiting[:-1], last.model_copy(update=later)]
    return [*waiting, event]
