"""Carries a task's events over a WebSocket: the same events, with the same ids, as its SSE stream.

Server messages are JSON text frames: `{"id", "event", "data"}` for each event (data is
the ProgressEvent), `{"event": "ping"}` after a quiet interval, `{"event": "pong"}` in
answer to a client's `{"event": "ping"}`, and `{"event": "error", "data": Problem}` before a
close with code 4000 + the HTTP status (1008, policy violation, when the caller already holds
as many open streams as it may: the Problem says 429). The socket closes (1000) after the terminal event.
A batch's counts-only events are paced as on SSE (batchpace.py). It must not decide access
(the route does) and shares the process's reader (fanout.Hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from longtask_api import errors, fanout, schemas, sse
from longtask_contracts import names, phases

# RFC 6455's "policy violation": the caller holds too many open streams (the error message
# before it carries the 429 Problem).
POLICY_VIOLATION = 1008
SUBPROTOCOL = "longtask.v1"  # offered by browsers next to the token subprotocol, and echoed


def _message(entry: fanout.Entry) -> str:
    data = sse.progress_event(entry.event).model_dump(mode="json", exclude_none=True)
    return json.dumps({"id": entry.id, "event": entry.event.kind.value, "data": data})


async def accept(websocket: WebSocket) -> None:
    """Accept, choosing our subprotocol if offered (a token subprotocol is never echoed)."""
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)


async def refuse(websocket: WebSocket, exc: errors.ApiError, *, code: int | None = None) -> None:
    """Tell why in an error message, then close with `code`, by default 4000 + the HTTP status
    (e.g. 4403, 4404)."""
    await accept(websocket)
    await websocket.send_text(json.dumps({"event": "error", "data": exc.problem().model_dump()}))
    await websocket.close(code=4000 + exc.status if code is None else code, reason=exc.detail[:120])


async def serve(
    websocket: WebSocket, *, hub: fanout.Hub, obj: dict[str, Any], after: str, idle_seconds: float
) -> None:
    """Send the task's events after `after` until the terminal one, answering pings meanwhile."""
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with lock:
            await websocket.send_text(text)

    async def events() -> None:
        uid = obj["metadata"]["uid"]
        key = names.events_stream(uid)
        status = obj.get("status") or {}
        if phases.is_terminal(phases.parse(status.get("phase"))) and not await hub.redis.exists(key):
            data = schemas.public(obj).status.model_dump(mode="json", by_alias=True)
            await send(json.dumps({"event": "status", "data": data}))
            return
        follow = sse.watch(hub, key, after=after, idle_seconds=idle_seconds)
        async with contextlib.aclosing(follow) as entries:
            async for entry in entries:
                await send('{"event": "ping"}' if entry is None else entry.memo("ws-task", _message))
                if entry is not None and entry.event.terminal:
                    return

    async def replies() -> None:
        while True:
            text = await websocket.receive_text()
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(text).get("event") == "ping":
                    await send('{"event": "pong"}')

    sender = asyncio.create_task(events())
    listener = asyncio.create_task(replies())
    try:
        done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
        await asyncio.gather(sender, listener, return_exceptions=True)
    if sender in done and sender.exception() is None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close(code=1000)
