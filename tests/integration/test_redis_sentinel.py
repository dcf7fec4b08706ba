"""Clients made by longtask_runtime.redisconn ride out a Sentinel failover.

Covers, against real redis-server processes (a primary, a replica, three Sentinels:
longtask_dev.redisha, what `longtask dev up --redis-ha` runs): the asyncio client (every
component's), the blocking one (the worker's) and the Celery sender (kombu's sentinel
transport, its priority lists) all write to the primary; after the primary is SIGKILLed
the same client objects, with no error reaching the caller, write to the promoted replica
(each waits for the Sentinels instead of failing); after a failover that leaves the old
primary running as a replica (SENTINEL FAILOVER), a connection still open to it gets
READONLY, and the write is retried on the new primary; the Sentinels' own password is used
when set; the settings' LONGTASK_REDIS_SENTINELS / _MASTER reach the clients.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from longtask_contracts import names
from longtask_dev import cluster, procs, redisha
from longtask_runtime import redisconn, sending
from longtask_worker import settings as worker_settings


class Set:
    """A RedisHA with its children, stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.children: list[procs.Child] = []
        self.ha = redisha.RedisHA(
            state_dir=folder,
            server=cluster.redis_server_path(),
            add=self._add,
            redis_child=cluster.redis_child,
            wait_for_redis=cluster.wait_for_redis,
        )

    def _add(self, child: procs.Child) -> procs.Child:
        self.children.append(child.start())
        return child

    def target(self, *, sentinel_password: str = "") -> redisconn.Target:
        return redisconn.target(
            url="redis://127.0.0.1:1/0",  # host and port unused through Sentinels
            sentinels=self.ha.sentinels.split(","),
            master=redisha.MASTER,
            sentinel_password=sentinel_password,
        )

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[Set]:
    s = Set(tmp_path)
    try:
        s.ha.start()
        yield s
    finally:
        s.stop()


def _fail_over(ha: Set) -> int:
    old = ha.ha.kill_primary()
    return ha.ha.wait_failover(old=old)


async def test_the_async_client_follows_the_failover(ha: Set):
    client = redisconn.async_client(ha.target(), max_connections=4)
    key = f"t-{uuid.uuid4().hex}"
    try:
        first = ha.ha.primary_port()
        assert first is not None
        await client.set(key, "before")
        assert ha.node(first).get(key) == "before"
        old = ha.ha.kill_primary()
        # No wait here: the command queues behind the failover and lands on the new primary.
        await client.set(key, "after")
        new = ha.ha.wait_failover(old=old)
        assert new != first
        assert ha.node(new).get(key) == "after"
        assert await client.get(key) == b"after"
    finally:
        await client.aclose()


def test_the_blocking_client_follows_the_failover(ha: Set):
    client = redisconn.sync_client(ha.target())
    key = f"t-{uuid.uuid4().hex}"
    try:
        client.set(key, "before")
        old = ha.ha.kill_primary()
        client.set(key, "after")
        new = ha.ha.wait_failover(old=old)
        assert ha.node(new).get(key) == "after"
    finally:
        client.close()


async def test_a_demoted_primary_answering_readonly_is_left_for_the_new_one(ha: Set):
    client = redisconn.async_client(ha.target(), max_connections=1)  # one connection, reused
    key = f"t-{uuid.uuid4().hex}"
    try:
        await client.set(key, "before")  # the connection is open, to the primary
        old = ha.ha.primary_port()
        ha.node(ha.ha.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", redisha.MASTER)
        new = ha.ha.wait_failover(old=old)
        procs.wait_until(
            lambda: ha.node(old).role()[0] == "slave", timeout=30, what="the old primary to be a replica"
        )
        await client.set(key, "after")
        assert ha.node(new).get(key) == "after"
    finally:
        await client.aclose()


def test_celery_sends_through_the_sentinels_before_and_after_a_failover(ha: Set):
    app = sending.celery_sender(ha.target())
    queue = names.queue("sentinel-test")
    try:
        assert app.conf.broker_url.startswith("sentinel://127.0.0.1:")
        app.send_task(names.RUN_TASK, args=[{}], queue=queue, priority=names.transport_priority(0))
        first = ha.ha.primary_port()
        assert first is not None
        assert _queued(ha.node(first), queue) == 1
        new = _fail_over(ha)
        app.send_task(names.RUN_TASK, args=[{}], queue=queue, priority=names.transport_priority(0))
        assert _queued(ha.node(new), queue) >= 1  # the first may or may not have been replicated
    finally:
        app.close()


def _queued(node: redis.Redis, queue: str) -> int:
    """Messages on every priority list of `queue` (kombu's names: queue, queue\\x06\\x16N)."""
    return sum(int(node.llen(key)) for key in node.scan_iter(match=f"{queue}*"))


async def test_the_sentinels_own_password(ha: Set):
    primary = ha.ha.primary_port()
    for port in ha.ha.sentinel_ports:
        # A Sentinel takes no CONFIG SET requirepass; its default user's password is the same.
        ha.node(port).execute_command("ACL", "SETUSER", "default", "on", ">s3cret")
    with pytest.raises(redis.AuthenticationError):
        ha.node(ha.ha.sentinel_ports[0]).ping()  # they now want it
    client = redisconn.async_client(ha.target(sentinel_password="s3cret"), max_connections=2)
    try:
        assert await redisconn.master_address(ha.target(sentinel_password="s3cret")) == ("127.0.0.1", primary)
        assert await client.ping()
    finally:
        await client.aclose()


def test_the_settings_name_the_sentinels(ha: Set, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("LONGTASK_REDIS_SENTINELS", ha.ha.sentinels)
    monkeypatch.setenv("LONGTASK_REDIS_MASTER", redisha.MASTER)
    target = worker_settings.WorkerSettings().redis_target()
    assert target.sentinels == tuple(("127.0.0.1", p) for p in ha.ha.sentinel_ports)
    client = redisconn.sync_client(target)
    try:
        assert client.ping()
    finally:
        client.close()
