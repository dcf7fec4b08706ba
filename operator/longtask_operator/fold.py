"""Folds worker events into a LongTask status; pure functions, no I/O here.

The status dict is the resource's camelCase form. fold() refuses moves the phase
machine forbids (a late progress event after Succeeded, say) by returning None.
"""

from __future__ import annotations

import datetime
from typing import Any

from longtask_contracts import events, phases

Kind = events.Kind


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def progress_text(progress: float) -> str:
    return f"{int(progress)}%"


def fold(status: dict[str, Any], event: events.TaskEvent) -> dict[str, Any] | None:
    """The status after `event`, or None if the event does not apply to it any more."""
    current = phases.parse(status.get("phase"))
    if not phases.can_move(current, event.phase):
        return None
    if event.attempt and event.attempt < int(status.get("attempts") or 0):
        return None  # an event of an attempt that was superseded
    new = dict(status, phase=event.phase.value)
    if event.kind == Kind.QUEUED:
        new.update(queuedAt=_iso(event.at), progress=new.get("progress", 0))
    elif event.kind == Kind.STARTED:
        new["attempts"] = max(int(new.get("attempts") or 0), event.attempt)
        new.setdefault("startedAt", _iso(event.at))
        new["worker"] = event.worker
    if event.progress is not None:
        new["progress"] = round(event.progress, 2)
    for key in ("message", "step"):
        value = getattr(event, key)
        if value is not None:
            new[key] = value
    if event.terminal:
        new["finishedAt"] = _iso(event.at)
        new["conditions"] = [_finished_condition(event)]
    if event.result is not None:
        new["result"] = event.result
    if event.error is not None:
        new["error"] = event.error
        new["message"] = event.error.get("message")
    new["progressText"] = progress_text(float(new.get("progress") or 0))
    return new


def _finished_condition(event: events.TaskEvent) -> dict[str, str]:
    """A Succeeded condition, so `kubectl wait --for=condition=Succeeded` works too."""
    ok = event.kind == Kind.SUCCEEDED
    return {
        "type": "Succeeded",
        "status": "True" if ok else "False",
        "reason": event.phase.value,
        "message": (event.error or {}).get("message", event.message or event.phase.value),
        "lastTransitionTime": _iso(event.at),
    }


def event_message(status: dict[str, Any]) -> tuple[str, bool]:
    """The Kubernetes Event text for a status that just reached its phase, and if it warns."""
    phase = phases.parse(status.get("phase"))
    attempt = status.get("attempts") or 0
    if phase == phases.Phase.RUNNING:
        return f"attempt {attempt} started on {status.get('worker')}", False
    if phase == phases.Phase.FAILED:
        err = status.get("error") or {}
        return f"{err.get('type', 'Error')}: {err.get('message', '')}", True
    if phase == phases.Phase.SUCCEEDED:
        return f"succeeded after {attempt} attempt(s)", False
    return status.get("message") or phase.value, False
