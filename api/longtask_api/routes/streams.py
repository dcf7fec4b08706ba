"""Live streams: every task event of a namespace (SSE), and one task's events over a WebSocket.

The namespace stream needs `watch` on longtasks in the namespace (what `kubectl get -w`
needs); the WebSocket needs `get`, like the task's SSE stream. Each holds one of the
caller's open-stream slots (streamlimit) while it lasts. Both share the process's
reader (fanout.Hub); handlers only check and hand over.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket
from sse_starlette import EventSourceResponse

from longtask_api import access, auth, deps, errors, settings, sse, streamlimit, ws
from longtask_runtime import kubeerrors

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["streams"], responses=errors.RESPONSES)


@router.get(
    "/events",
    operation_id="streamNamespaceEvents",
    response_class=EventSourceResponse,
    responses=sse.answers(
        "Server-Sent Events of every task in the namespace: `event` the kind, "
        "`data` a TaskEventPublic (name, uid, phase, progress, step, message...). Starts now "
        "unless Last-Event-ID names an earlier id of this stream (then it first sends the "
        "namespace's events after it, read in pages); never ends by itself."
    )
    | sse.TOO_MANY_STREAMS,
)
async def stream_namespace_events(
    namespace: deps.Namespace,
    hub: deps.Hub,
    cfg: deps.Settings,
    _caller: deps.MayWatch,
    _stream: deps.OpenStream,
    last_event_id: deps.LastEventId = None,
) -> EventSourceResponse:
    """Every task's events in the namespace, in one stream (the web page's list). Needs `watch`."""
    after = sse.parse_last_event_id(last_event_id, default=None)
    return sse.response(
        sse.namespace_stream(hub=hub, namespace=namespace, after=after, idle_seconds=cfg.sse_ping_seconds),
        ping_seconds=cfg.sse_ping_seconds,
    )


@router.websocket("/tasks/{name}/ws")
async def task_websocket(
    websocket: WebSocket,
    namespace: deps.Namespace,
    name: deps.TaskName,
    after: Annotated[str | None, Query(max_length=64, description="Resume after this event id.")] = None,
) -> None:
    """The task's events as JSON messages with the SSE ids; `?after=ID` resumes. Needs `get`."""
    state = websocket.app.state
    caller: auth.Caller = websocket.state.caller
    streams: streamlimit.OpenStreams = state.streams
    try:
        start = sse.parse_last_event_id(after) or "0"
        await state.guard.require(caller, namespace=namespace, action=access.Route.GET_TASK.value)
        obj = await state.tasks.get(namespace=namespace, name=name)
        slot = streams.take(caller.rate_key)
    except errors.TooManyRequests as exc:
        await ws.refuse(websocket, exc, code=ws.POLICY_VIOLATION)
        return
    except (errors.ApiError, kubeerrors.KubeError) as exc:
        await ws.refuse(websocket, errors.of(exc))
        return
    try:
        await ws.accept(websocket)
        idle = settings.get_settings().sse_ping_seconds
        await ws.serve(websocket, hub=state.hub, obj=obj, after=start, idle_seconds=idle)
    finally:
        slot.release()
