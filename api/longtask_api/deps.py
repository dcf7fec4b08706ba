"""FastAPI dependencies as Annotated aliases, so route signatures read like prose.

Every dependency is `async def`, also those that do no I/O: FastAPI runs a plain `def`
dependency in its thread pool, a thread hop each (several per request, queued behind
anyio's 40 threads under load), for what takes a microsecond on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, Header, Path, Request

from longtask_api import (
    access,
    auth,
    errors,
    fanout,
    firstsend,
    idempotency,
    patterns,
    ratelimit,
    settings,
    sharedgets,
    streamlimit,
)
from longtask_contracts import schedules
from longtask_runtime import kube, poolwatch


async def get_settings() -> settings.ApiSettings:
    return settings.get_settings()


def _app_state(attribute: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency: what the lifespan (app.py) put in `app.state.<attribute>`."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, attribute)

    return get


async def get_caller(request: Request) -> auth.Caller:
    caller: auth.Caller = request.state.caller  # set by middleware.Authenticate
    return caller


Tasks = Annotated[kube.Kube, Depends(_app_state("tasks"))]
Redis = Annotated[aioredis.Redis, Depends(_app_state("redis"))]
Hub = Annotated[fanout.Hub, Depends(_app_state("hub"))]
# LongTask GETs that concurrent callers share (sharedgets.py): the stream routes' opening read.
TaskGets = Annotated[sharedgets.SharedGets, Depends(_app_state("task_gets"))]
Pools = Annotated[kube.Kube, Depends(_app_state("pools"))]
# Who may use which pool (kept current by longtask_runtime.poolwatch).
PoolAccess = Annotated[poolwatch.PoolWatch, Depends(_app_state("pool_access"))]
Settings = Annotated[settings.ApiSettings, Depends(get_settings)]
# The first-attempt sender, or None when LONGTASK_GATEWAY_DISPATCH is off.
FirstSends = Annotated[firstsend.FirstSends | None, Depends(_app_state("first_sends"))]
Guard = Annotated[auth.Guard, Depends(_app_state("guard"))]
Caller = Annotated[auth.Caller, Depends(get_caller)]
Namespace = Annotated[
    str, Path(pattern=patterns.NAMESPACE, max_length=63, description="Kubernetes namespace.")
]
TaskName = Annotated[str, Path(pattern=patterns.OBJECT_NAME, max_length=253, description="LongTask name.")]
ScheduleName = Annotated[
    str,
    Path(pattern=patterns.OBJECT_NAME, max_length=schedules.NAME_MAX, description="LongTaskSchedule name."),
]
# The SSE resume header; sse.parse_last_event_id enforces the pattern it declares, with its
# own message (a 422 naming Last-Event-ID). Empty is the same as absent.
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=64,
        description="Resume after this event id (a Redis stream id such as 1719400000000-0).",
        json_schema_extra={"pattern": patterns.STREAM_ID},
    ),
]
# The create's Idempotency-Key (None without one); a malformed one is a 400 (idempotency.parse).
IdempotencyKey = Annotated[str | None, Depends(idempotency.header)]


def _allowed(route: access.Route) -> Callable[[str, auth.Guard, auth.Caller], Awaitable[auth.Caller]]:
    """A dependency: the caller, once Kubernetes allows it `route`'s action in the path's namespace."""

    async def check(namespace: Namespace, guard: Guard, caller: Caller) -> auth.Caller:
        await guard.require(caller, namespace=namespace, action=route.value)
        return caller

    return check


MayCreate = Annotated[auth.Caller, Depends(_allowed(access.Route.CREATE_TASK))]
MayGet = Annotated[auth.Caller, Depends(_allowed(access.Route.GET_TASK))]
MayList = Annotated[auth.Caller, Depends(_allowed(access.Route.LIST_TASKS))]
MayWatch = Annotated[auth.Caller, Depends(_allowed(access.Route.WATCH_TASKS))]
MayListPools = Annotated[auth.Caller, Depends(_allowed(access.Route.LIST_POOLS))]
MayCancel = Annotated[auth.Caller, Depends(_allowed(access.Route.CANCEL_TASK))]
MayReplay = Annotated[auth.Caller, Depends(_allowed(access.Route.REPLAY_DEADLETTERS))]
MayListSchedules = Annotated[auth.Caller, Depends(_allowed(access.Route.LIST_SCHEDULES))]
MayGetSchedule = Annotated[auth.Caller, Depends(_allowed(access.Route.GET_SCHEDULE))]
MayPatchSchedule = Annotated[auth.Caller, Depends(_allowed(access.Route.PATCH_SCHEDULE))]


async def spend_create_token(request: Request, caller: MayCreate) -> None:
    """One token of the caller's creation bucket, or 429 with Retry-After."""
    buckets: ratelimit.Buckets = request.app.state.create_buckets
    wait = buckets.take(caller.rate_key)
    if wait > 0:
        raise errors.TooManyRequests(
            "too many tasks created; slow down", retry_after=ratelimit.retry_after(wait)
        )


CreateQuota = Annotated[None, Depends(spend_create_token)]


async def hold_stream(request: Request, caller: Caller) -> AsyncIterator[None]:
    """A slot among the caller's open streams for as long as the answer streams, or 429.

    A dependency with yield: FastAPI leaves it after the response has been sent (the
    stream ended, or its client went away), and also when the handler fails first.
    """
    streams: streamlimit.OpenStreams = request.app.state.streams
    slot = streams.take(caller.rate_key)
    try:
        yield
    finally:
        slot.release()


OpenStream = Annotated[None, Depends(hold_stream)]
