"""Where every component's Redis clients come from: straight from REDIS_URL, or through
Redis Sentinels (LONGTASK_REDIS_SENTINELS) to the master they name.

It builds clients and opens no connection itself (redis-py connects on a client's first
command). Nothing else may call redis.Redis.from_url or build a pool: a client made
elsewhere would not follow a failover.

In Sentinel mode REDIS_URL still says how to talk to the data nodes: its scheme (rediss://:
TLS, also to the Sentinels), username, password, database number and ssl_* query options;
its host and port are not used. A client then asks the Sentinels where the master is before
each new connection, and again whenever a connection fails or the node it reached answers
READONLY (a demoted master): redis-py's Sentinel-managed connections turn that answer into a
ConnectionError, which the retry of redisopts.client_kwargs retries, so a failover of a few
seconds costs the caller a wait, not an error.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel as syncsentinel
from redis import connection as syncconnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from longtask_runtime import redisopts

DEFAULT_MASTER = "longtask"
# How long a Sentinel may take to answer "where is the master?" before the next one is asked.
SENTINEL_TIMEOUT_SECONDS = 2.0


def _parse_url(url: str) -> dict[str, Any]:
    return cast(dict[str, Any], syncconnection.parse_url(url))  # type: ignore[no-untyped-call]


class SentinelsInvalid(ValueError):
    """LONGTASK_REDIS_SENTINELS is not a list of host:port."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Which Redis to reach and how: `url` alone, or `sentinels` (host, port) naming `master`."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER
    sentinel_password: str = ""

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def node_kwargs(self) -> dict[str, Any]:
        """The data nodes' connection options from the URL (password, db, ssl_*), without its
        host and port: what a Sentinel-managed pool connects to the master with."""
        kwargs = _parse_url(self.url)
        for key in ("host", "port", "connection_class", "path"):
            kwargs.pop(key, None)
        if self.tls:
            kwargs["ssl"] = True  # SentinelConnectionPool picks its TLS connection class from it
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        """How to talk to the Sentinels themselves: their own password, TLS like the data nodes."""
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
        }
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        if self.tls:
            kwargs["ssl"] = True
            kwargs.update({k: v for k, v in _parse_url(self.url).items() if k.startswith("ssl_")})
        return kwargs


def parse_sentinels(items: list[str]) -> tuple[tuple[str, int], ...]:
    """["host:port", "[::1]:26379", ...] as (host, port) pairs; SentinelsInvalid if one is not."""
    found = []
    for item in items:
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SentinelsInvalid(f"not host:port: {item!r} (LONGTASK_REDIS_SENTINELS)")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def target(*, url: str, sentinels: list[str], master: str, sentinel_password: str) -> Target:
    """The Target the settings name (settings.Base.redis_target)."""
    return Target(
        url=url,
        sentinels=parse_sentinels(sentinels),
        master=master or DEFAULT_MASTER,
        sentinel_password=sentinel_password,
    )


def of(where: Target | str) -> Target:
    """A bare URL is a Target without Sentinels (what tests and single-node setups pass)."""
    return where if isinstance(where, Target) else Target(url=where)


# redis-py (8.1) asks the Sentinels where the master is in SentinelManagedConnection.connect()
# only. A connection whose command failed reconnects elsewhere: send_packed_command calls
# connect_check_health(), which opens a socket to the address the connection last had, the
# dead master's, and every retry goes there again (seen: a write issued right after the
# master was SIGKILLed failed after its minute of retries, with the new master elected
# 8 s in). These classes ask in _connect(), which every way of connecting ends in.


class _AsyncFollowing(aiosentinel.SentinelManagedConnection):
    """An asyncio Sentinel-managed connection that asks for the master on every connect."""

    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call]


class _AsyncFollowingTLS(_AsyncFollowing, aiosentinel.SentinelManagedSSLConnection):
    """The same over TLS (rediss://)."""


class _SyncFollowing(syncsentinel.SentinelManagedConnection):
    """A blocking Sentinel-managed connection that asks for the master on every connect."""

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()  # type: ignore[no-untyped-call]


class _SyncFollowingTLS(_SyncFollowing, syncsentinel.SentinelManagedSSLConnection):
    """The same over TLS (rediss://)."""


class _BlockingSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel-managed pool whose callers queue for a connection (redisopts.async_client)."""


def async_client(
    where: Target | str, *, max_connections: int = 64, retries: int = redisopts.RETRIES
) -> aioredis.Redis:
    """A redis.asyncio.Redis whose callers queue for one of `max_connections` connections and
    whose commands ride out a restart or failover (redisopts.client_kwargs: `retries` tries)."""
    t = of(where)
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": 60,
        **redisopts.client_kwargs(asyncio=True, retries=retries),
    }
    if not t.sentinels:
        pool = aioredis.BlockingConnectionPool.from_url(t.url, **options)
        return aioredis.Redis(connection_pool=pool)
    client = _async_sentinel(t).master_for(
        t.master,
        redis_class=aioredis.Redis,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=_AsyncFollowingTLS if t.tls else _AsyncFollowing,
        **options,
    )
    return cast(aioredis.Redis, client)


def quick_async_client(where: Target | str, *, max_connections: int, timeout: float) -> aioredis.Redis:
    """A small redis.asyncio.Redis that gives up soon: no retries, `timeout` seconds per
    connect or reply (the gateway's first sends, which the operator makes anyway)."""
    t = of(where)
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
    }
    if not t.sentinels:
        return aioredis.Redis.from_url(t.url, **options)
    return cast(
        aioredis.Redis, _async_sentinel(t).master_for(t.master, redis_class=aioredis.Redis, **options)
    )


def sync_client(where: Target | str) -> redis.Redis:
    """A blocking redis.Redis that rides out a restart or failover (the worker's)."""
    t = of(where)
    options = redisopts.client_kwargs(asyncio=False)
    if not t.sentinels:
        return redis.Redis.from_url(t.url, **options)
    sentinel = syncsentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(t.sentinels),
        sentinel_kwargs={**t.sentinel_kwargs(), "retry": Retry(NoBackoff(), 0)},  # see _async_sentinel
        **t.node_kwargs(),
    )
    client = sentinel.master_for(  # type: ignore[no-untyped-call]
        t.master,
        redis_class=redis.Redis,
        connection_class=_SyncFollowingTLS if t.tls else _SyncFollowing,
        **options,
    )
    return cast(redis.Redis, client)


def _async_sentinel(t: Target) -> aiosentinel.Sentinel:
    """No retries when asking one Sentinel: the next one is asked instead, and the command's
    own retry asks them all again (retries here multiplied the wait when none answers: a
    gateway request took 100 s instead of 15 to answer 503)."""
    return aiosentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(t.sentinels),
        sentinel_kwargs={**t.sentinel_kwargs(), "retry": AsyncRetry(NoBackoff(), 0)},
        **t.node_kwargs(),
    )


async def master_address(where: Target | str) -> tuple[str, int]:
    """Where the master is now: the Sentinels' answer, or the URL's host and port."""
    t = of(where)
    if not t.sentinels:
        kwargs = _parse_url(t.url)
        return str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379))
    sentinel = _async_sentinel(t)
    try:
        host, port = await sentinel.discover_master(t.master)
        return str(host), int(port)
    finally:
        for client in sentinel.sentinels:
            await client.aclose()
