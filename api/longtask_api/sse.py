"""Turns a task's Redis Stream into Server-Sent Events; the SSE id is the stream id.

A client that reconnects with Last-Event-ID gets exactly the entries after that id
(XREAD is exclusive of the id given), so nothing is missed or repeated. The generator
ends after the terminal event; when the client goes away it is cancelled, and the
blocking read with it, so a gone client costs nothing afterwards.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from longtask_api import errors, metrics, schemas
from longtask_contracts import events, names, phases

_STREAM_ID = re.compile(r"^\d+(-\d+)?$")


def parse_last_event_id(value: str | None) -> str:
    """'0' (from the start) when absent; a stream id otherwise, or Invalid."""
    if value is None or value == "":
        return "0"
    if not _STREAM_ID.match(value):
        raise errors.Invalid(
            "Last-Event-ID must be an event id this stream sent, like 1719400000000-0",
            [errors.FieldError(field="Last-Event-ID", message=f"not a stream id: {value!r}")],
        )
    return value


def _sse(entry_id: str, event: events.TaskEvent) -> dict[str, Any]:
    data = schemas.ProgressEvent(phase=event.phase, **event.model_dump(exclude={"namespace", "name", "uid"}))
    return {"id": entry_id, "event": event.kind.value, "data": data.model_dump_json(exclude_none=True)}


async def stream(
    *, redis: aioredis.Redis, obj: dict[str, Any], after: str, block_ms: int
) -> AsyncIterator[dict[str, Any]]:
    """Yield SSE dicts (id, event, data) for the LongTask `obj` after stream id `after`."""
    uid = obj["metadata"]["uid"]
    key = names.events_stream(uid)
    status = obj.get("status") or {}
    if phases.is_terminal(phases.parse(status.get("phase"))) and not await redis.exists(key):
        # The events have been cleaned up: the status is all there is to tell.
        yield {"event": "status", "data": schemas.public(obj).status.model_dump_json(by_alias=True)}
        return
    metrics.SSE_STREAMS.inc()
    try:
        while True:
            reply: Any = await redis.xread({key: after}, count=500, block=block_ms)
            for _, entries in reply or []:
                for raw_id, fields in entries:
                    after = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    event = events.TaskEvent.decode(fields)
                    metrics.SSE_EVENTS.inc()
                    yield _sse(after, event)
                    if event.terminal:
                        return
    finally:  # also when the client went away and the generator was cancelled
        metrics.SSE_STREAMS.dec()
