"""create_app(): the gateway's FastAPI application, its lifespan and its error answers.

Run with `longtask api` (uvicorn --factory longtask_api.app:create_app).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import prometheus_client
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError

from longtask_api import errors, kube, settings
from longtask_api.routes import deadletters, tasks
from longtask_contracts import redisopts


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problem = errors.Problem(
        status=422,
        detail="the request is invalid",
        errors=[
            errors.FieldError(field=_field(tuple(e.get("loc", ()))), message=str(e.get("msg", "")))
            for e in exc.errors()
        ],
    )
    return JSONResponse(problem.model_dump(), status_code=422)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ApiError)
    return JSONResponse(exc.problem().model_dump(), status_code=exc.status)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    problem = errors.Problem(status=503, detail=f"Redis is unreachable: {exc}")
    return JSONResponse(problem.model_dump(), status_code=503)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    cfg = settings.get_settings()
    api = await kube.connect()
    app.state.tasks = kube.LongTasks(api)
    app.state.redis = redisopts.async_client(cfg.redis_url, max_connections=cfg.redis_max_connections)
    try:
        yield
    finally:
        await app.state.redis.aclose()
        await api.close()


async def _limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Refuse oversized bodies before reading them (the task params limit is far smaller)."""
    limit = settings.get_settings().max_body_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        problem = errors.Problem(
            status=413, detail=f"the request body is {length} bytes; the limit is {limit}"
        )
        return JSONResponse(problem.model_dump(), status_code=413)
    return await call_next(request)


def create_app() -> FastAPI:
    app = FastAPI(
        title="longtask gateway",
        version="0.1.0",
        summary="Create long-running LongTasks and follow their progress live.",
        lifespan=_lifespan,
    )
    app.include_router(tasks.router)
    app.include_router(deadletters.router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(errors.ApiError, _api_error)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.middleware("http")(_limit_body)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
