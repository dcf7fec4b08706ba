"""A watcher's batch events through the shared reader and its pacing (Hub + batchpace.paced), real Redis.

Covers: a burst of a batch's counts-only events written faster than the interval reaches a
watcher as far fewer events, the held one going out when its interval is up with no further
entry to push it; merged events carry every failed item in order and the id of the latest;
the terminal event follows at once; a watcher that catches up on the whole history gets it
merged too; closing the paced watcher releases the stream.
"""

from __future__ import annotations

import asyncio
import uuid

from longtask_api import batchpace, fanout
from longtask_contracts import events, names
from longtask_runtime import redisopts

TOTAL = 2000


def _event(done: int, *, kind: events.Kind = events.Kind.PROGRESS, failed: list[int] | None = None) -> dict:
    return events.TaskEvent(
        kind=kind,
        namespace="ns",
        name="batch",
        uid="u",
        items={"total": TOTAL, "succeeded": done - len(failed or []), "failed": 0, "seq": done},
        failed_items=[{"index": i, "error": {"type": "E", "message": f"item {i}"}} for i in failed or []]
        or None,
    ).encode()


async def _collect(paced, *, until_terminal: bool = True) -> list[fanout.Entry]:
    got: list[fanout.Entry] = []
    async for entry in paced:
        if entry is None:
            continue
        got.append(entry)
        if until_terminal and entry.event.terminal:
            break
    return got


async def test_a_burst_is_merged_and_the_held_event_goes_on_time(redis_url):
    redis = redisopts.async_client(redis_url)
    hub = fanout.Hub(redis, block_ms=1000)
    await hub.start()
    key = names.events_stream(uuid.uuid4().hex)
    try:
        paced = batchpace.paced(hub.follow(key, after=None, idle_seconds=30), interval=0.5)
        assert await anext(paced) is None  # registered
        async with redis.pipeline(transaction=False) as pipe:  # 200 reports at once, 1 failed item every 10th
            for done in range(1, 201):
                pipe.xadd(key, _event(done, failed=[done] if done % 10 == 0 else None))
            ids = [i.decode() for i in await pipe.execute()]
        # Nothing more is written: the last held event must still come, on its own timer.
        got = []
        while not got or got[-1].id != ids[-1]:
            entry = await anext(paced)
            if entry is not None:
                got.append(entry)
        assert len(got) < 20, [e.id for e in got]
        assert got[-1].event.items is not None and got[-1].event.items["seq"] == 200
        failed = [f["index"] for e in got for f in e.event.failed_items or []]
        assert failed == list(range(10, 201, 10))  # every failed item, once, in order
        assert [fanout.id_key(e.id) for e in got] == sorted(fanout.id_key(e.id) for e in got)

        end = (await redis.xadd(key, _event(TOTAL, kind=events.Kind.SUCCEEDED))).decode()
        entry = await anext(paced)
        assert entry is not None and entry.id == end  # never held

        # A watcher that catches up on all of it gets it merged as well, and misses nothing.
        late = batchpace.paced(hub.follow(key, after="0", idle_seconds=30), interval=0.5)
        history = await _collect(late)
        assert len(history) < 10 and history[-1].id == end
        assert [f["index"] for e in history for f in e.event.failed_items or []] == list(range(10, 201, 10))
        await late.aclose()
        await paced.aclose()
        await asyncio.sleep(0)
        assert hub.watchers == 0
    finally:
        await hub.stop()
        await redis.delete(key)
        await redis.aclose()
