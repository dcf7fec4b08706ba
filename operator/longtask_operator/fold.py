"""Folds worker events into a LongTask status; pure functions, no I/O here.

The status dict is the resource's camelCase form. fold() refuses moves the phase
machine forbids (a late progress event after Succeeded, say) by returning None.
"""

from __future__ import annotations

import datetime
from typing import Any

from longtask_contracts import batch, events, phases

Kind = events.Kind
HISTORY_LIMIT = 20
# The longest text each status field keeps (characters). Task code controls these strings,
# and an object past the apiserver's size limit could never be written again; the full
# text stays in the task's event stream (SSE, `longtask logs`). Documented in docs/guarantees.md.
LIMITS = {"message": 1024, "step": 128, "worker": 256, "error.type": 256, "error.message": 4096}
HISTORY_ERROR_LIMIT = 512  # per attemptHistory entry, up to HISTORY_LIMIT of them
_ENDED_ATTEMPT = {Kind.RETRYING, Kind.SUCCEEDED, Kind.FAILED, Kind.CANCELLED}
_ITEM_FIELDS = ("total", "queued", "running", "succeeded", "failed", "cancelled", "seq", "failedIndexes")


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def progress_text(progress: float) -> str:
    return f"{int(progress)}%"


def _stale(status: dict[str, Any], event: events.TaskEvent) -> bool:
    attempts = int(status.get("attempts") or 0)
    if event.kind == Kind.QUEUED:  # queued after that attempt already started: sent late
        return event.attempt <= attempts
    if event.items is not None and not event.terminal and event.attempt == attempts:
        # A batch's counts published out of order (two lanes, one after the other): older.
        return int(event.items.get("seq") or 0) < int((status.get("items") or {}).get("seq") or 0)
    return bool(event.attempt) and event.attempt < attempts  # an attempt that was superseded


def fold(status: dict[str, Any], event: events.TaskEvent) -> dict[str, Any] | None:
    """The status after `event`, or None if the event does not apply to it any more."""
    current = phases.parse(status.get("phase"))
    if not phases.can_move(current, event.phase) or _stale(status, event):
        return None
    new = dict(status, phase=event.phase.value)
    new.setdefault("attempts", 0)
    if event.kind == Kind.QUEUED:
        if phases.is_terminal(current):  # a replay from the dead-letter queue
            for key in ("finishedAt", "error", "conditions", "result"):
                new.pop(key, None)
            new.update(deadLettered=False, replays=int(new.get("replays") or 0) + 1)
        new["queuedAt"] = iso(event.at)
        new.pop("nextAttemptAt", None)
    elif event.kind == Kind.STARTED:
        new["attempts"] = max(int(new.get("attempts") or 0), event.attempt)
        new.setdefault("startedAt", iso(event.at))
        worker = bounded(event.worker, LIMITS["worker"])
        new["worker"] = worker
        new.pop("error", None)
        new["attemptHistory"] = [
            *new.get("attemptHistory", []),
            {"attempt": event.attempt, "worker": worker, "startedAt": iso(event.at)},
        ][-HISTORY_LIMIT:]
    _copy_fields(new, event)
    if event.kind in _ENDED_ATTEMPT:
        _close_attempt(new, event)
    if event.terminal:
        new["finishedAt"] = iso(event.at)
        new["conditions"] = [_finished_condition(event)]
        new.pop("nextAttemptAt", None)
    new["progressText"] = progress_text(float(new.get("progress") or 0))
    return new


def _copy_fields(new: dict[str, Any], event: events.TaskEvent) -> None:
    if event.progress is not None:
        new["progress"] = round(event.progress, 2)
    for key in ("message", "step"):
        value = getattr(event, key)
        if value is not None:
            new[key] = bounded(value, LIMITS[key])
    if event.result is not None:
        new["result"] = event.result
    if event.error is not None:
        new["error"] = bounded_error(event.error, LIMITS["error.message"])
        new["message"] = bounded(event.error.get("message"), LIMITS["message"])
    if event.retry_at is not None:
        new["nextAttemptAt"] = iso(event.retry_at)
    if event.dead_lettered is not None:
        new["deadLettered"] = event.dead_lettered
    if event.items is not None:
        _copy_items(new, event)


def _copy_items(new: dict[str, Any], event: events.TaskEvent) -> None:
    """A batch's counts; its failedIndexes from its end event, or, until then, gathered from
    the failed items the events name (at most batch.EVENT_FAILURES_MAX each)."""
    assert event.items is not None
    old = new.get("items") or {}
    items = {k: v for k, v in event.items.items() if k in _ITEM_FIELDS}
    if "failedIndexes" not in items:
        failed = set(batch.expand(str(old.get("failedIndexes") or "").split(",...")[0]))
        failed.update(int(f["index"]) for f in event.failed_items or [] if "index" in f)
        if failed and event.kind != Kind.QUEUED:
            items["failedIndexes"] = batch.bounded_indexes(sorted(failed))
    new["items"] = items
    new["itemsText"] = batch.Counts.model_validate(items).text()


def _close_attempt(new: dict[str, Any], event: events.TaskEvent) -> None:
    history = [dict(h) for h in new.get("attemptHistory", [])]
    if not history or history[-1].get("attempt") != event.attempt:
        if event.kind == Kind.CANCELLED or not event.attempt:
            return  # cancelled before this attempt ever started, or failed before any was sent
        history.append({"attempt": event.attempt})  # its start was never reported (worker died)
    last = history[-1]
    last["finishedAt"] = iso(event.at)
    error_type = (event.error or {}).get("type")
    last["outcome"] = "WorkerLost" if error_type == "WorkerLost" else event.phase.value
    if event.error is not None:
        last["error"] = bounded_error(event.error, HISTORY_ERROR_LIMIT)
    new["attemptHistory"] = history[-HISTORY_LIMIT:]


def bounded(text: str | None, limit: int) -> str | None:
    """`text` cut to `limit` characters, saying so (and that the event stream has it all)."""
    if text is None or len(text) <= limit:
        return text
    note = f"... [{len(text)} characters; the full text is in the task's event stream]"
    return text[: max(0, limit - len(note))] + note


def bounded_error(error: dict[str, str], message_limit: int) -> dict[str, str]:
    return {
        **error,
        "type": bounded(error.get("type"), LIMITS["error.type"]) or "Error",
        "message": bounded(error.get("message"), message_limit) or "",
    }


def _finished_condition(event: events.TaskEvent) -> dict[str, str]:
    """A Succeeded condition, so `kubectl wait --for=condition=Succeeded` works too."""
    ok = event.kind == Kind.SUCCEEDED
    return {
        "type": "Succeeded",
        "status": "True" if ok else "False",
        "reason": event.phase.value,
        "message": bounded(
            (event.error or {}).get("message", event.message or event.phase.value), LIMITS["message"]
        )
        or event.phase.value,
        "lastTransitionTime": iso(event.at),
    }


def event_message(status: dict[str, Any]) -> tuple[str, bool] | None:
    """The Kubernetes Event for a status that just reached its phase: (message, warning).

    None for the routine hops (Queued, Running, Succeeded): an Event is what people look
    for in `kubectl describe` (a failure, a retry, a cancellation), and each one is an
    apiserver request; the status and the task's event stream already show the rest.
    """
    phase = phases.parse(status.get("phase"))
    attempt = status.get("attempts") or 0
    err = status.get("error") or {}
    if phase == phases.Phase.RETRYING:
        return (
            f"attempt {attempt} failed ({err.get('type')}: {err.get('message')}); "
            f"next attempt at {status.get('nextAttemptAt')}",
            True,
        )
    if phase == phases.Phase.FAILED:
        dead = " (dead-lettered)" if status.get("deadLettered") else ""
        return f"{err.get('type', 'Error')}: {err.get('message', '')}{dead}", True
    if phase == phases.Phase.CANCELLED:
        return status.get("message") or "cancelled", False
    return None
