"""create_app(): the gateway's FastAPI application, its lifespan, middleware and error answers.

Run with `longtask api` (uvicorn --factory longtask_api.app:create_app). Every error,
whoever raises it, leaves as a Problem document, without a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from starlette import routing
from starlette.exceptions import HTTPException

from longtask_api import (
    auth,
    errors,
    fanout,
    firstsend,
    kube,
    middleware,
    openapi,
    ratelimit,
    requestmetrics,
    settings,
    sharedgets,
    streamlimit,
)
from longtask_api.routes import deadletters, health, schedules, streams, tasks, tasktypes, web, workerpools
from longtask_contracts import envvars, tracing
from longtask_runtime import kube as runtimekube
from longtask_runtime import kubeerrors, poolwatch, redisconn, sending

log = logging.getLogger(__name__)
# Tries of a request's Redis command before its answer is a 503 (redisopts backoff: about
# 15 s), enough to ride out a Sentinel failover (5-10 s) without answering past a client's
# timeout when Redis is down for longer.
REDIS_RETRIES = 12
# How long shutdown waits for first sends still running (uvicorn already waited for requests).
SHUTDOWN_SEND_SECONDS = 5.0
UNTRACED_PATHS = envvars.Variable(
    name="OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
    default="healthz,readyz,metrics",
    description="Comma-separated paths (regular expressions) the gateway makes no server span for.",
    readers=(envvars.GATEWAY,),
)
ENVIRONMENT = (UNTRACED_PATHS,)


def _field(error: dict[str, object]) -> str:
    if error.get("type") == "json_invalid":
        return "body"
    loc = error.get("loc") or ()
    parts = [str(p) for p in loc if p != "body"] if isinstance(loc, tuple | list) else []
    return ".".join(parts) or "body"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problem = errors.Invalid(
        "the request is invalid",
        [errors.FieldError(field=_field(e), message=str(e.get("msg", ""))) for e in exc.errors()],
    )
    return errors.response(problem)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ApiError)
    return errors.response(exc)


async def _kube_error(_: Request, exc: Exception) -> JSONResponse:
    """A failed Kubernetes call, answered as errors.from_kube says (4xx or 503, never 500)."""
    assert isinstance(exc, kubeerrors.KubeError)
    return errors.response(errors.from_kube(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors (404 route, 405, a body it cannot decode) as Problems."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # FastAPI: "There was an error parsing the body" (e.g. not UTF-8)
        field = errors.FieldError(field="body", message="the body is not JSON (UTF-8)")
        return errors.response(errors.Invalid("the request body is not valid JSON", [field]))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allow(request)
    return errors.response(errors.ApiError(str(exc.detail), status=exc.status_code, headers=headers))


def _allow(request: Request) -> str:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, routing.Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not routing.Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    """Redis (or kombu publishing to it) failed: 503 with Retry-After (errors.from_backend)."""
    answer = errors.from_backend(exc)
    assert answer is not None
    log.warning("answered 503: %s: %s", type(exc).__name__, exc)
    return errors.response(answer)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """Anything else, also from a middleware (outside the handlers above): a Redis that is down
    is still a 503 (errors.from_backend), never a 500; the rest a 500 without details."""
    if (answer := errors.from_backend(exc)) is not None:
        log.warning("answered 503: %s: %s", type(exc).__name__, exc)
        return errors.response(answer)
    log.error("unexpected error", exc_info=exc)
    return errors.response(errors.ApiError("internal error; the gateway's log has the details"))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    cfg = settings.get_settings()
    api = await runtimekube.login()
    app.state.kube = api
    app.state.tasks = runtimekube.Kube(api, timeout=cfg.kube_timeout_seconds)
    app.state.task_gets = sharedgets.SharedGets(app.state.tasks)
    reviews = kube.Reviews(api, timeout=cfg.kube_timeout_seconds) if cfg.auth else None
    app.state.guard = auth.Guard(
        reviews=reviews,
        ttl=cfg.auth_cache_seconds,
        size=cfg.auth_cache_size,
        review_rate=cfg.auth_review_rate_per_second,
        review_burst=cfg.auth_review_burst,
        reviews_at_once=cfg.auth_reviews_at_once,
    )
    app.state.streams = streamlimit.OpenStreams(per_caller=cfg.streams_per_caller)
    app.state.create_buckets = ratelimit.Buckets(rate=cfg.create_rate_per_second, burst=cfg.create_burst)
    app.state.redis = redisconn.async_client(
        cfg.redis_target(), max_connections=cfg.redis_max_connections, retries=REDIS_RETRIES
    )
    app.state.pools = app.state.tasks  # the same client: LongTasks and WorkerPools alike
    # Who may use which pool: every WorkerPool and Namespace, followed (poolwatch); a create
    # its pool refuses is a 403, and the first sends below skip it.
    app.state.pool_access = poolwatch.PoolWatch(kube=app.state.tasks)
    pool_watches = app.state.pool_access.start()
    app.state.hub = fanout.Hub(
        app.state.redis,
        block_ms=cfg.sse_block_ms,
        queue_size=cfg.watcher_queue_size,
        pace_seconds=cfg.batch_event_seconds,
    )
    await app.state.hub.start()
    # One Celery sender per process, for the first attempts of the tasks it creates (None: off).
    sends = None
    if cfg.gateway_dispatch:
        sends = firstsend.FirstSends.open(
            redis=firstsend.redis_client(cfg.redis_target()),
            celery=sending.celery_sender(cfg.redis_target()),
            pools=app.state.pool_access.claims,
        )
    app.state.first_sends = sends
    if cfg.auth:
        log.info(
            "gateway auth: on (Kubernetes TokenReview + SubjectAccessReview, decisions cached %g s)",
            cfg.auth_cache_seconds,
        )
    else:
        log.warning("gateway auth: off (LONGTASK_AUTH=false): anyone who reaches it may do anything")
    log.info(
        "gateway dispatch: %s",
        "on (it sends the first attempt of each task it creates)" if sends else "off (the operator sends)",
    )
    try:
        yield
    finally:
        if sends is not None:
            await sends.close(wait_seconds=SHUTDOWN_SEND_SECONDS)
        for watching in pool_watches:
            watching.cancel()
        await asyncio.gather(*pool_watches, return_exceptions=True)
        await app.state.hub.stop()
        await app.state.redis.aclose()
        await api.close()
        tracing.flush()


def create_app() -> FastAPI:
    cfg = settings.get_settings()
    app = FastAPI(
        title="longtask gateway",
        version="0.1.0",
        summary="Create long-running LongTasks and follow their progress live.",
        description=(
            "Every route but the probes needs `Authorization: Bearer <Kubernetes token>`; "
            "Kubernetes RBAC on `longtasks.longtask.io` decides what the caller may do "
            "(docs/security.md)."
            if cfg.auth
            else "Auth is off on this gateway (LONGTASK_AUTH=false): every route is open to "
            "anyone who reaches it (docs/security.md)."
        ),
        lifespan=_lifespan,
        redoc_url=None,
    )
    app.include_router(tasks.router)
    app.include_router(deadletters.router)
    app.include_router(streams.router)
    app.include_router(tasktypes.router)
    app.include_router(workerpools.router)
    app.include_router(schedules.router)
    app.include_router(web.router)
    app.include_router(health.router)
    openapi.install(app, auth=cfg.auth)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(errors.ApiError, _api_error)
    app.add_exception_handler(kubeerrors.KubeError, _kube_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RedisError, _redis_down)
    app.add_exception_handler(OperationalError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
    # The last added runs first: CORS (preflights need no token), then authentication, then the body cap.
    app.add_middleware(middleware.BodyLimit, limit=cfg.max_body_bytes, create_limit=cfg.max_batch_body_bytes)
    app.add_middleware(middleware.Authenticate)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Retry-After", "WWW-Authenticate"],
        )
    if tracing.setup("longtask-api"):
        _instrument(app)
    app.add_middleware(requestmetrics.RequestMetrics)  # outermost: times every answer
    return app


def _instrument(app: FastAPI) -> None:
    """A server span per request (probes and /metrics left out unless
    OTEL_PYTHON_FASTAPI_EXCLUDED_URLS says otherwise), none per SSE message sent."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=os.environ.get(UNTRACED_PATHS.name, UNTRACED_PATHS.default),
        exclude_spans=["receive", "send"],
    )
