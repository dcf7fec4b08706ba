"""Client options every component uses for Redis, so all of them ride out a restart alike.

It opens no connection: components pass these to redis.Redis / redis.asyncio.Redis, or
use async_client(), whose pool makes a burst of handlers wait for a connection instead
of failing with "Too many connections".
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

# Exponential backoff from 50 ms up to 2 s per try, 40 tries: about a minute of patience.
_BACKOFF = {"cap": 2.0, "base": 0.05}
_RETRIES = 40


def client_kwargs(*, asyncio: bool) -> dict[str, Any]:
    retry_cls = AsyncRetry if asyncio else Retry
    return {
        "retry": retry_cls(ExponentialBackoff(**_BACKOFF), retries=_RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 10,
    }


def async_client(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A redis.asyncio.Redis whose callers queue for one of `max_connections` connections."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=60, **client_kwargs(asyncio=True)
    )
    return aioredis.Redis(connection_pool=pool)
