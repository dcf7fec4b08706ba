"""The gateway's shared stream reader (fanout.Hub) against a real Redis.

Covers: a watcher is registered before its first yield (None), then gets every entry in
order; a watcher joining later from an id catches up exactly (nothing missed or repeated)
and then follows live; many watchers of a stream are served by one reader; a watcher that
falls `queue_size` behind gets what it has queued, contiguous, then ends (it resumes by
reconnecting); a namespace filter passes only that namespace's entries; watchers that leave
release the stream.
"""

from __future__ import annotations

import asyncio
import uuid

from longtask_api import fanout
from longtask_contracts import events, names, wire
from longtask_runtime import redisopts


def _event(i: int, namespace: str = "a") -> dict[str, str]:
    return events.TaskEvent(
        kind=events.Kind.PROGRESS, namespace=namespace, name="t", uid="u", progress=i
    ).encode()


async def test_catch_up_live_lag_and_namespace_filter(redis_url):
    redis = redisopts.async_client(redis_url)
    hub = fanout.Hub(redis, block_ms=1000, queue_size=3)
    await hub.start()
    key = names.events_stream(uuid.uuid4().hex)
    try:
        ids = [await redis.xadd(key, _event(i)) for i in range(2)]
        ids = [i.decode() for i in ids]
        first = hub.follow(key, after="0", idle_seconds=30)
        assert await anext(first) is None  # registered
        got = [await anext(first) for _ in range(2)]
        assert [e.id for e in got if e] == ids

        ids.append((await redis.xadd(key, _event(2))).decode())
        entry = await anext(first)
        assert entry is not None and entry.id == ids[2] and entry.event.progress == 2

        late = hub.follow(key, after=ids[0], idle_seconds=30)
        assert await anext(late) is None
        ids.append((await redis.xadd(key, _event(3))).decode())
        late_got = [await anext(late) for _ in range(3)]
        assert [e.id for e in late_got if e] == ids[1:]  # catch-up then live, exactly once
        assert hub.watchers == 2
        entry = await anext(first)
        assert entry is not None and entry.id == ids[3]

        # `late` stops reading; 5 more entries overflow its queue of 3 while `first` reads them.
        more: list[str] = []
        for i in range(4, 9):
            more.append((await redis.xadd(key, _event(i))).decode())
            entry = await anext(first)  # `first` keeps up, one entry at a time
            assert entry is not None and entry.id == more[-1]
        rest = [e.id async for e in late if e is not None]
        assert rest == more[:3]  # contiguous; then it ended: the client resumes from more[2]
        await first.aclose()
        assert hub.watchers == 0

        # A namespace filter on a shared stream.
        shared = names.events_stream(uuid.uuid4().hex)
        only_b = hub.follow(shared, after=None, namespace="b", idle_seconds=30)
        assert await anext(only_b) is None
        await redis.xadd(shared, _event(1, "a"))
        b_id = (await redis.xadd(shared, _event(2, "b"))).decode()
        entry = await anext(only_b)
        assert entry is not None and entry.id == b_id and entry.event.namespace == "b"
        await only_b.aclose()
    finally:
        await hub.stop()
        await redis.delete(key)
        await redis.aclose()


async def test_catch_up_reads_in_pages_and_hands_on_one_namespace(redis_url):
    """A watcher resuming from 0 over a long shared stream: every XRANGE it makes carries a
    COUNT (seen in Redis's own SLOWLOG, which logs every command while the threshold is 0),
    and it gets exactly its namespace's entries, in order."""
    redis = redisopts.async_client(redis_url)
    hub = fanout.Hub(redis, block_ms=1000, count=100)
    await hub.start()
    key = names.events_stream(uuid.uuid4().hex)
    threshold = (await redis.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"]
    length = (await redis.config_get("slowlog-max-len"))["slowlog-max-len"]
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(1000):
                pipe.xadd(key, _event(i % 100, namespace="a" if i % 3 == 0 else "b"))
            ids = [i.decode() for i in await pipe.execute()]
        mine = [entry_id for i, entry_id in enumerate(ids) if i % 3 == 0]
        live = hub.follow(key, after=None, idle_seconds=30)  # the reader follows the stream now
        assert await anext(live) is None
        await redis.config_set("slowlog-max-len", 10_000)
        await redis.config_set("slowlog-log-slower-than", 0)
        await redis.slowlog_reset()
        follow = hub.follow(key, after="0", namespace="a", idle_seconds=30)
        assert await anext(follow) is None
        got = [(await anext(follow)) for _ in mine]
        assert [e.id for e in got if e is not None] == mine
        assert all(e is not None and e.event.namespace == "a" for e in got)
        await redis.config_set("slowlog-log-slower-than", threshold)
        reads = [
            [wire.text(a) for a in entry["command"].split()]
            if isinstance(entry["command"], bytes | str)
            else [wire.text(a) for a in entry["command"]]
            for entry in await redis.slowlog_get(10_000)
        ]
        ranges = [args for args in reads if args[0].upper() == "XRANGE" and args[1] == key]
        assert ranges, reads
        assert all("COUNT" in [a.upper() for a in args] for args in ranges), ranges
        assert len(ranges) >= len(ids) // 100
        await follow.aclose()
        await live.aclose()
    finally:
        await redis.config_set("slowlog-log-slower-than", threshold)
        await redis.config_set("slowlog-max-len", length)
        await hub.stop()
        await redis.delete(key)
        await redis.aclose()


async def test_watchers_joining_at_once_share_the_catch_up_reads(redis_url):
    """50 watchers joining a followed stream from 0 at once: each gets every entry exactly once,
    in order, and the backlog is read once per page for all of them (XRANGEs counted in
    Redis's SLOWLOG), not once per watcher."""
    redis = redisopts.async_client(redis_url)
    hub = fanout.Hub(redis, block_ms=1000, count=100)
    await hub.start()
    key = names.events_stream(uuid.uuid4().hex)
    threshold = (await redis.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"]
    length = (await redis.config_get("slowlog-max-len"))["slowlog-max-len"]
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(300):
                pipe.xadd(key, _event(i % 100))
            ids = [i.decode() for i in await pipe.execute()]
        live = hub.follow(key, after=None, idle_seconds=30)  # the reader follows the stream now
        assert await anext(live) is None
        await redis.config_set("slowlog-max-len", 10_000)
        await redis.config_set("slowlog-log-slower-than", 0)
        await redis.slowlog_reset()

        async def watcher() -> list[str]:
            follow = hub.follow(key, after="0", idle_seconds=30)
            assert await anext(follow) is None
            got = [(await anext(follow)) for _ in ids]
            await follow.aclose()
            return [e.id for e in got if e is not None]

        seen = await asyncio.gather(*(watcher() for _ in range(50)))
        await redis.config_set("slowlog-log-slower-than", threshold)
        assert all(s == ids for s in seen)
        commands = [
            [
                wire.text(a)
                for a in (e["command"].split() if isinstance(e["command"], bytes | str) else e["command"])
            ]
            for e in await redis.slowlog_get(10_000)
        ]
        ranges = [c for c in commands if c[0].upper() == "XRANGE" and c[1] == key]
        assert 3 <= len(ranges) <= 6, ranges  # 300 entries in pages of 100, not 50 x 3
        await live.aclose()
    finally:
        await redis.config_set("slowlog-log-slower-than", threshold)
        await redis.config_set("slowlog-max-len", length)
        await hub.stop()
        await redis.delete(key)
        await redis.aclose()
