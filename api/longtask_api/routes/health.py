"""Probes and metrics: /healthz (liveness), /readyz (readiness), /metrics; open to everyone.

They must not need a token (middleware.OPEN_PATHS) and must not reveal anything about tasks.
"""

from __future__ import annotations

import asyncio

import prometheus_client
from fastapi import APIRouter, Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from longtask_api import deps, errors, kube, serve

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (liveness); says nothing about its dependencies."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, redis: deps.Redis, cfg: deps.Settings) -> dict[str, str]:
    """Ready when Redis answers PING and the apiserver answers /version; else 503 naming which."""
    timeout = cfg.kube_timeout_seconds
    try:
        await asyncio.wait_for(redis.ping(), timeout=timeout)
    except (RedisError, TimeoutError, OSError):
        raise errors.Unavailable("not ready: Redis does not answer") from None
    await kube.ping(request.app.state.kube, request_timeout=timeout)
    return {"status": "ready"}


@router.get("/metrics")
async def metrics() -> Response:
    return Response(
        prometheus_client.generate_latest(serve.registry()), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )
