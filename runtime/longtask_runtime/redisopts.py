"""Client options every component uses for Redis, so all of them ride out a restart or a
Sentinel failover alike.

It opens no connection: redisconn builds every component's clients with these options.
async_client() here takes a bare URL only (tests and tools that talk to one known node);
components use redisconn.async_client, which also follows Sentinels.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

# Exponential backoff from 50 ms up to 2 s per try, 40 tries: about a minute of patience,
# well beyond the 5-10 s a Sentinel failover takes (down-after plus the election).
_BACKOFF = {"cap": 2.0, "base": 0.05}
RETRIES = 40
# A connect that takes longer is a node that is gone (a partition, not a refusal): give up on
# it and ask again (through Sentinels: ask them where the master is now).
CONNECT_TIMEOUT_SECONDS = 5


def client_kwargs(*, asyncio: bool, retries: int = RETRIES) -> dict[str, Any]:
    """Retry (exponential backoff, `retries` tries) on a lost connection, a timeout or a
    READONLY answer; a connect timeout; a PING on connections idle for 10 s."""
    retry_cls = AsyncRetry if asyncio else Retry
    return {
        "retry": retry_cls(ExponentialBackoff(**_BACKOFF), retries=retries),
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        # READONLY: a demoted master that a connection still reaches (behind a Service or a
        # virtual IP); the retry reconnects, which reaches the new master. Through Sentinels,
        # redis-py turns READONLY into a ConnectionError and asks them again.
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ReadOnlyError],
        "health_check_interval": 10,
    }


def async_client(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A redis.asyncio.Redis on `url` whose callers queue for one of `max_connections`
    connections (redisconn.async_client is the same, and follows Sentinels too)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=60, **client_kwargs(asyncio=True)
    )
    return aioredis.Redis(connection_pool=pool)
