"""The gateway answers 503 with Retry-After, never 500, while Redis is down or failing over.

Covers: each error a Redis client raises then (a refused or lost connection, a timeout,
READONLY from a demoted master, MasterNotFoundError when no Sentinel names a master,
BusyLoadingError of a restarting node) and kombu's OperationalError from a publish, raised
in a route or in a middleware (outside FastAPI's exception handlers), is a 503 Problem with
Retry-After; any other RedisError is a 503 too; an error that is not Redis's stays a 500;
every 503 the gateway gives (the apiserver's too) carries Retry-After.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from kombu.exceptions import OperationalError
from redis import exceptions as redisexceptions
from redis.asyncio.sentinel import MasterNotFoundError
from starlette.middleware.base import BaseHTTPMiddleware

from longtask_api import app as gateway
from longtask_api import auth, errors, settings
from longtask_runtime import kubeerrors

DOWN = [
    redisexceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redisexceptions.TimeoutError("Timeout reading from 127.0.0.1:6379"),
    redisexceptions.ReadOnlyError("You can't write against a read only replica."),
    MasterNotFoundError("No master found for 'longtask'"),
    redisexceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redisexceptions.ResponseError("some other Redis failure"),
    BaseExceptionGroup("sends", [redisexceptions.ConnectionError("lost"), OperationalError("lost")]),
]


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[BaseException]]]:
    """The gateway's app (no lifespan: nothing reached) with a route and a middleware that
    raise what the test puts in the list."""
    monkeypatch.setenv("LONGTASK_AUTH", "false")
    settings.get_settings.cache_clear()
    app = gateway.create_app()
    app.state.guard = auth.Guard(reviews=None, ttl=1, size=1)  # auth off, as the lifespan sets it
    raising: list[BaseException] = []

    async def boom() -> None:
        raise raising[0]

    async def middle(request, call_next):  # type: ignore[no-untyped-def]
        if request.url.path == "/middleware-boom":
            raise raising[0]
        return await call_next(request)

    app.add_api_route("/boom", boom)
    app.add_middleware(BaseHTTPMiddleware, dispatch=middle)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http, raising
    settings.get_settings.cache_clear()


@pytest.mark.parametrize("exc", DOWN, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("path", ["/boom", "/middleware-boom"])
async def test_redis_down_is_a_503_with_retry_after(client, exc: BaseException, path: str):
    http, raising = client
    raising.append(exc)
    answer = await http.get(path)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "2"
    assert answer.json()["status"] == 503
    assert "Redis" in answer.json()["detail"]


async def test_anything_else_is_still_a_500(client):
    http, raising = client
    raising.append(ValueError("a bug"))
    answer = await http.get("/boom")
    assert answer.status_code == 500
    assert "Retry-After" not in answer.headers


def test_every_503_carries_retry_after():
    unreachable = errors.from_kube(kubeerrors.Unavailable("the Kubernetes API did not answer"))
    assert (unreachable.status, unreachable.headers) == (503, {"Retry-After": "2"})
    assert errors.Unavailable("x", retry_after=7).headers == {"Retry-After": "7"}
