"""Turns stream entries from the shared reader (fanout.Hub) into Server-Sent Events.

A task's stream: the SSE id is the task's Redis stream id, so a client that reconnects
with Last-Event-ID gets exactly the entries after it, and the stream ends after the
terminal event. The namespace-wide stream: every task's events in one namespace, from the
shared status stream (ids are its ids). Each event is encoded once, however many watch it.
A batch's counts-only events are paced per watcher (batchpace.py): merged, never dropped.
A client that goes away costs nothing afterwards (the generators release their watcher).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse

from longtask_api import batchpace, errors, fanout, metrics, patterns, schemas
from longtask_contracts import events, names, phases

_STREAM_ID = re.compile(patterns.STREAM_ID)
# Never cached; not buffered by a proxy (nginx) so each event leaves at once.
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


# The 429 of every streaming route, for OpenAPI (`responses=answers(...) | TOO_MANY_STREAMS`).
TOO_MANY_STREAMS: dict[int | str, dict[str, Any]] = {
    429: {
        "model": errors.Problem,
        "description": "This caller already holds as many open streams (SSE and WebSocket) as one "
        "gateway allows (LONGTASK_STREAMS_PER_CALLER); see Retry-After.",
    }
}


def answers(description: str) -> dict[int | str, dict[str, Any]]:
    """An SSE route's 200 answer in OpenAPI: an event stream, as `description` tells."""
    return {200: {"content": {"text/event-stream": {}}, "description": description}}


def response(frames: AsyncIterator[Any], *, ping_seconds: float) -> EventSourceResponse:
    """The answer that sends `frames`, with a keep-alive comment every `ping_seconds`."""
    return EventSourceResponse(frames, ping=int(ping_seconds), headers=_HEADERS)


def parse_last_event_id(value: str | None, *, default: str | None = "0") -> str | None:
    """`default` when absent or empty ('0': from the start); a stream id otherwise, or Invalid.

    The rule is patterns.STREAM_ID, which the routes' OpenAPI declares for the header.
    """
    if value is None or value == "":
        return default
    if not _STREAM_ID.fullmatch(value):
        raise errors.Invalid(
            "Last-Event-ID must be an event id this stream sent, like 1719400000000-0",
            [errors.FieldError(field="Last-Event-ID", message=f"not a stream id: {value!r}")],
        )
    return value


def progress_event(event: events.TaskEvent) -> schemas.ProgressEvent:
    return schemas.ProgressEvent(phase=event.phase, **event.model_dump(exclude={"namespace", "name", "uid"}))


def log_entry(entry_id: Any, fields: dict[Any, Any]) -> schemas.LogEntry:
    """One raw stream entry as an event-log item."""
    event = events.TaskEvent.decode(fields)
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return schemas.LogEntry(id=entry_id, event=event.kind.value, data=progress_event(event))


def watch(
    hub: fanout.Hub, key: str, *, after: str | None, idle_seconds: float, namespace: str | None = None
) -> AsyncGenerator[fanout.Entry | None, None]:
    """hub.follow(...), with each batch's counts-only events paced to hub.pace_seconds (batchpace.py)."""
    follow = hub.follow(key, after=after, namespace=namespace, idle_seconds=idle_seconds)
    if hub.pace_seconds <= 0:
        return follow
    return batchpace.paced(follow, interval=hub.pace_seconds)


def _frame(entry_id: str, kind: str, data: str) -> bytes:
    return f"id: {entry_id}\nevent: {kind}\ndata: {data}\n\n".encode()


def _task_frame(entry: fanout.Entry) -> bytes:
    data = progress_event(entry.event).model_dump_json(exclude_none=True)
    return _frame(entry.id, entry.event.kind.value, data)


def _namespace_frame(entry: fanout.Entry) -> bytes:
    e = entry.event
    data = schemas.TaskEventPublic(name=e.name, uid=e.uid, **progress_event(e).model_dump())
    return _frame(entry.id, e.kind.value, data.model_dump_json(exclude_none=True))


async def stream(
    *, hub: fanout.Hub, obj: dict[str, Any], after: str, idle_seconds: float
) -> AsyncIterator[bytes | dict[str, Any]]:
    """SSE frames for the LongTask `obj` after stream id `after`, until its terminal event."""
    uid = obj["metadata"]["uid"]
    key = names.events_stream(uid)
    status = obj.get("status") or {}
    if phases.is_terminal(phases.parse(status.get("phase"))) and not await hub.redis.exists(key):
        # The events have been cleaned up: the status is all there is to tell.
        yield {"event": "status", "data": schemas.public(obj).status.model_dump_json(by_alias=True)}
        return
    metrics.SSE_STREAMS.inc()
    try:
        follow = watch(hub, key, after=after, idle_seconds=idle_seconds)
        async with contextlib.aclosing(follow) as entries:
            async for entry in entries:
                if entry is None:
                    continue  # EventSourceResponse sends the keep-alive pings
                metrics.SSE_EVENTS.inc()
                yield entry.memo("sse-task", _task_frame)
                if entry.event.terminal:
                    return
    finally:  # also when the client went away and the generator was cancelled
        metrics.SSE_STREAMS.dec()


async def namespace_stream(
    *, hub: fanout.Hub, namespace: str, after: str | None, idle_seconds: float
) -> AsyncIterator[bytes]:
    """SSE frames of every task event in `namespace` (data: TaskEventPublic), from `after` or now."""
    metrics.SSE_STREAMS.inc()
    try:
        follow = watch(hub, names.STATUS_STREAM, after=after, namespace=namespace, idle_seconds=idle_seconds)
        async with contextlib.aclosing(follow) as entries:
            async for entry in entries:
                if entry is None:
                    yield b": ready\n\n"  # registered (first) or quiet: the page may list now
                    continue
                metrics.SSE_EVENTS.inc()
                yield entry.memo("sse-namespace", _namespace_frame)
    finally:
        metrics.SSE_STREAMS.dec()
