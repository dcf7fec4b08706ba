"""FastAPI dependencies as Annotated aliases, so route signatures read like prose.

Every dependency is `async def`, also those that do no I/O: FastAPI runs a plain `def`
dependency in its thread pool, a thread hop each (several per request, queued behind
anyio's 40 threads under load), for what takes a microsecond on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from longtask_api import access, auth, errors, fanout, firstsend, ratelimit, settings
from longtask_runtime import kube

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
NS_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# Only documents the scheme in OpenAPI: middleware.Authenticate has already checked the token.
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="kubernetes",
    description="A Kubernetes bearer token (e.g. `kubectl create token NAME`); the gateway checks it "
    "with a TokenReview and each request with a SubjectAccessReview (see docs/security.md).",
)
_Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


async def get_settings() -> settings.ApiSettings:
    return settings.get_settings()


async def get_tasks(request: Request) -> kube.Kube:
    tasks: kube.Kube = request.app.state.tasks
    return tasks


async def get_redis(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client


async def get_hub(request: Request) -> fanout.Hub:
    hub: fanout.Hub = request.app.state.hub
    return hub


async def get_pools(request: Request) -> kube.Kube:
    pools: kube.Kube = request.app.state.pools
    return pools


async def get_first_sends(request: Request) -> firstsend.FirstSends | None:
    """The first-attempt sender, or None when LONGTASK_GATEWAY_DISPATCH is off."""
    sends: firstsend.FirstSends | None = request.app.state.first_sends
    return sends


async def get_guard(request: Request) -> auth.Guard:
    guard: auth.Guard = request.app.state.guard
    return guard


async def get_caller(request: Request, _: _Bearer) -> auth.Caller:
    caller: auth.Caller = request.state.caller  # set by middleware.Authenticate
    return caller


Tasks = Annotated[kube.Kube, Depends(get_tasks)]
Redis = Annotated[aioredis.Redis, Depends(get_redis)]
Hub = Annotated[fanout.Hub, Depends(get_hub)]
Pools = Annotated[kube.Kube, Depends(get_pools)]
Settings = Annotated[settings.ApiSettings, Depends(get_settings)]
FirstSends = Annotated[firstsend.FirstSends | None, Depends(get_first_sends)]
Guard = Annotated[auth.Guard, Depends(get_guard)]
Caller = Annotated[auth.Caller, Depends(get_caller)]
Namespace = Annotated[str, Path(pattern=NS_PATTERN, max_length=63, description="Kubernetes namespace.")]
TaskName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253, description="LongTask name.")]


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


async def spend_create_token(request: Request, caller: MayCreate) -> None:
    """One token of the caller's creation bucket, or 429 with Retry-After."""
    buckets: ratelimit.Buckets = request.app.state.create_buckets
    wait = buckets.take(caller.rate_key)
    if wait > 0:
        raise errors.TooManyRequests(
            "too many tasks created; slow down", retry_after=ratelimit.retry_after(wait)
        )


CreateQuota = Annotated[None, Depends(spend_create_token)]
