"""One shared Redis reader per gateway process, fanned out to every watcher of every stream.

A single blocking XREAD covers every stream that has at least one watcher (a task's event
stream, or the shared status stream behind the namespace-wide stream); each entry is decoded
once and handed to the in-memory queue of each watcher. So a watcher costs a queue and a
coroutine, not a Redis connection, and an event costs one read however many watch it.

A watcher joining a stream the reader already follows catches up with XRANGE up to the
reader's cursor, in pages of `count` entries (each handed on before the next is read; with a
namespace, only that namespace's entries are handed on), then takes live entries, skipping
any id it has already passed: nothing is missed or repeated. A page is the XRANGE of ids
after A up to B, where B is an id the reader has already passed: every entry of it exists
already and it can never change, so watchers that ask for the same page at once (a crowd
joining a task from its start) share one read and its decoded entries (and so their
encodings, Entry.memo); a stream keeps its last `PAGES_KEPT` pages while it is followed. A watcher that falls
`queue_size` entries behind is ended after what it has queued (contiguous), and resumes by
reconnecting with its last id.

It must not shape HTTP or WebSocket answers (sse.py, ws.py do) nor decide access.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from longtask_contracts import events, names, wire

log = logging.getLogger(__name__)
T = TypeVar("T")
WAKE_TTL_SECONDS = 3600  # a crashed gateway's wake stream goes away on its own
PAGES_KEPT = 32  # catch-up pages a followed stream keeps for the next watchers (_Stream.pages)


def id_key(stream_id: str) -> tuple[int, int]:
    """A Redis stream id ('1719400000000-3', or '0') as a sortable pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Entry:
    """One stream entry, decoded once; encodings for clients are computed once and shared."""

    __slots__ = ("_memo", "event", "id")

    def __init__(self, entry_id: str, event: events.TaskEvent) -> None:
        self.id = entry_id
        self.event = event
        self._memo: dict[str, Any] = {}

    def memo(self, name: str, build: Callable[[Entry], T]) -> T:
        """`build(self)`, computed by the first watcher that asks and reused by the others."""
        if name not in self._memo:
            self._memo[name] = build(self)
        value: T = self._memo[name]
        return value


class _Watcher:
    def __init__(self, namespace: str | None, queue_size: int) -> None:
        self.namespace = namespace
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(queue_size)
        self.lagged = False

    def offer(self, entry: Entry) -> None:
        if self.lagged or (self.namespace is not None and entry.event.namespace != self.namespace):
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.lagged = True  # what is queued stays contiguous; the watcher ends after it


class _Page:
    """One catch-up XRANGE, decoded: its entries, and the id of its last raw entry (None: empty)."""

    __slots__ = ("entries", "last")

    def __init__(self, entries: list[Entry], last: str | None) -> None:
        self.entries = entries
        self.last = last


class _Stream:
    def __init__(self, cursor: str) -> None:
        self.cursor = cursor  # the id of the last entry the reader handed out (or the start)
        self.watchers: set[_Watcher] = set()
        # Catch-up pages by (after, upto), oldest first: being read, or read (never changes).
        self.pages: dict[tuple[str, str], asyncio.Future[_Page]] = {}


class Hub:
    """The shared reader of one gateway process; start() in the app's lifespan, stop() at its end."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        block_ms: int,
        queue_size: int = 1000,
        count: int = 500,
        reads: int = 4,
        pace_seconds: float = 0.0,
    ):
        self.redis = redis
        # What the streams pace a batch's counts-only events to, per watcher (batchpace.py; 0: not at all).
        self.pace_seconds = pace_seconds
        # Catch-up reads at once: a burst of new watchers then borrows a few Redis connections, not one each.
        self._reads = asyncio.Semaphore(reads)
        self.block_ms = block_ms
        self.queue_size = queue_size
        self.count = count
        self.wake_key = names.gateway_wake(uuid.uuid4().hex)
        self._wake_cursor = "0"
        self._streams: dict[str, _Stream] = {}
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def watchers(self) -> int:
        return sum(len(s.watchers) for s in self._streams.values())

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="longtask-fanout-reader")

    async def stop(self) -> None:
        # A flag as well as cancel(): redis-py may turn a cancelled read into a ConnectionError.
        self._stopping = True
        self._changed.set()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self.wake_key)

    async def follow(
        self, key: str, *, after: str | None, namespace: str | None = None, idle_seconds: float
    ) -> AsyncGenerator[Entry | None, None]:
        """Entries of stream `key` after id `after` (None: from now on), then live ones.

        Yields None first, once the watcher is registered (nothing after that can be missed:
        a client may now list what exists), then after every `idle_seconds` without an entry
        (time for a keep-alive). With `namespace`, only that namespace's entries. Ends only
        if the watcher lagged behind.
        """
        if key not in self._streams:
            async with self._reads:
                last = await self.redis.xrevrange(key, count=1)
            head = wire.text(last[0][0]) if last else "0"
            if key not in self._streams:  # nobody else started it meanwhile
                self._streams[key] = _Stream(cursor=head)
                await self._wake()
        stream = self._streams[key]
        watcher = _Watcher(namespace, self.queue_size)
        stream.watchers.add(watcher)
        upto = stream.cursor  # the reader hands out what comes after this; we read up to it
        after = upto if after is None else after
        try:
            yield None
            while id_key(after) < id_key(upto):
                # A page at a time, each handed on before the next is read: one XRANGE never
                # holds Redis for the whole backlog, and a slow client slows only its reads.
                page = await self._page(stream, key, after=after, upto=upto)
                if page.last is None:
                    break
                for entry in page.entries:
                    if namespace is None or entry.event.namespace == namespace:
                        yield entry
                after = page.last
            while not (watcher.lagged and watcher.queue.empty()):
                try:
                    async with asyncio.timeout(idle_seconds):
                        entry = await watcher.queue.get()
                except TimeoutError:
                    yield None
                    continue
                if id_key(entry.id) > id_key(after):
                    after = entry.id
                    yield entry
        finally:
            stream.watchers.discard(watcher)
            if not stream.watchers and self._streams.get(key) is stream:
                del self._streams[key]

    async def _page(self, stream: _Stream, key: str, *, after: str, upto: str) -> _Page:
        """The entries after `after` up to `upto` (at most `count`), read once for every
        watcher that asks while the stream keeps the page; a failed read is not kept."""
        wanted = (after, upto)
        pending = stream.pages.get(wanted)
        if pending is None:
            pending = asyncio.ensure_future(self._read_page(key, after=after, upto=upto))
            stream.pages[wanted] = pending
            pending.add_done_callback(functools.partial(_forget_failed, stream.pages, wanted))
            while len(stream.pages) > PAGES_KEPT:
                del stream.pages[next(iter(stream.pages))]
        # shield: a watcher that goes away does not cancel the read the others wait for.
        return await asyncio.shield(pending)

    async def _read_page(self, key: str, *, after: str, upto: str) -> _Page:
        async with self._reads:
            raw: Any = await self.redis.xrange(key, min=f"({after}", max=upto, count=self.count)
        entries = [e for e in (_decode(wire.text(i), f) for i, f in raw) if e is not None]
        return _Page(entries, wire.text(raw[-1][0]) if raw else None)

    async def _wake(self) -> None:
        """Make the reader's blocking XREAD return so that it reads the new stream too."""
        self._changed.set()
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.wake_key, {"w": "1"}, maxlen=16, approximate=True)
                pipe.expire(self.wake_key, WAKE_TTL_SECONDS)
                await pipe.execute()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            if not self._streams:
                self._changed.clear()
                await self._changed.wait()
                continue
            cursors: Any = {k: s.cursor for k, s in self._streams.items()}
            cursors[self.wake_key] = self._wake_cursor
            try:
                reply: Any = await self.redis.xread(cursors, count=self.count, block=self.block_ms)
            except Exception as exc:  # the reader must outlive any one failure, or every watcher stalls
                if self._stopping:
                    return
                failures += 1
                log.warning("shared stream reader: %r (retrying)", exc)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                continue
            failures = 0
            for raw_key, entries in reply or []:
                self._deliver(wire.text(raw_key), entries)

    def _deliver(self, key: str, entries: list[Any]) -> None:
        if key == self.wake_key:
            self._wake_cursor = wire.text(entries[-1][0])
            return
        stream = self._streams.get(key)
        if stream is None:
            return  # its last watcher left while the read was under way
        for raw_id, fields in entries:
            stream.cursor = wire.text(raw_id)
            entry = _decode(stream.cursor, fields)
            if entry is not None:
                for watcher in list(stream.watchers):
                    watcher.offer(entry)


def _forget_failed(
    pages: dict[tuple[str, str], asyncio.Future[_Page]], wanted: tuple[str, str], done: asyncio.Future[_Page]
) -> None:
    """A read that failed or was cancelled is dropped, so the next watcher reads again."""
    if (done.cancelled() or done.exception() is not None) and pages.get(wanted) is done:
        del pages[wanted]


def _decode(entry_id: str, fields: dict[Any, Any]) -> Entry | None:
    try:
        return Entry(entry_id, events.TaskEvent.decode(fields))
    except ValueError:
        log.warning("skipping an undecodable stream entry %s", entry_id)
        return None
