"""Paces a batch's counts-only events for one watcher: at most one per interval per batch.

Workers already send a batch's counts at most every batch.REPORT_EVERY_SECONDS, but also one
event per report that has failed items, so a batch whose items fail fast, or a watcher that
catches up on a long history, could still get hundreds of events a second. So each watcher
(SSE or WebSocket, a task's stream or a namespace's) holds back a batch's counts-only event
(kind progress, with `items`) that comes less than `interval` after the previous one it sent
of that batch, and merges later ones into it: the latest counts, the failed items of all of
them (at most FAILED_ITEMS_MAX; past that the held event goes at once), and the id of the
latest, so a client that resumes with that id misses nothing. What is held goes out when its
interval is up, and before any other entry, so ids stay in stream order and every other event
(queued, started, the terminal one, another task's) keeps its place and is never delayed. The
interval counts from when the stream got past writing the previous event, so a slow client's
backlog of counts is merged too instead of being sent one by one.

Pacer is the pure rule (time passed in); paced() applies it to a watcher's entries. It must
not read Redis nor shape frames (fanout.py, sse.py and ws.py do).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable

from longtask_api import fanout
from longtask_contracts import events

FAILED_ITEMS_MAX = 100  # failed items one merged event names (ProgressEvent.failed_items says so)
_FORGET_AFTER = 1000  # batches remembered by one watcher before those past their interval are dropped


def mergeable(entry: fanout.Entry) -> bool:
    """A batch's counts-only event: a later one carries everything it says but its failed items."""
    return entry.event.kind is events.Kind.PROGRESS and entry.event.items is not None


def merge(held: fanout.Entry, later: fanout.Entry) -> fanout.Entry | None:
    """`later` carrying the failed items of both (held's first), or None if they are too many."""
    failed = (held.event.failed_items or []) + (later.event.failed_items or [])
    if len(failed) > FAILED_ITEMS_MAX:
        return None
    update = {
        "failed_items": failed or None,
        "message": later.event.message or held.event.message,
        "step": later.event.step or held.event.step,
    }
    return fanout.Entry(later.id, later.event.model_copy(update=update))


class Pacer:
    """One watcher's held event and when it last sent each batch's counts."""

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self.held: fanout.Entry | None = None
        self._sent: dict[str, float] = {}  # batch uid -> when its last counts-only event went out

    def due(self) -> float | None:
        """When the held event must go out (None: nothing is held)."""
        if self.held is None:
            return None
        return self._sent.get(self.held.event.uid, 0.0) + self.interval

    def push(self, entry: fanout.Entry | None, *, now: float) -> list[fanout.Entry | None]:
        """What to send now that `entry` came (None, a keep-alive tick, passes through)."""
        if entry is None:
            return [None]
        if not mergeable(entry):
            return [*self.flush(now=now), entry]
        out: list[fanout.Entry | None] = []
        if self.held is not None:
            merged = merge(self.held, entry) if self.held.event.uid == entry.event.uid else None
            if merged is not None:
                self.held = merged
                return []
            out.extend(self.flush(now=now))
        last = self._sent.get(entry.event.uid)
        if last is not None and now - last < self.interval:
            self.held = entry
            return out
        self._mark(entry.event.uid, now)
        out.append(entry)
        return out

    def flush(self, *, now: float) -> list[fanout.Entry | None]:
        """The held event, if any, to send now."""
        held, self.held = self.held, None
        if held is None:
            return []
        self._mark(held.event.uid, now)
        return [held]

    def sent(self, entry: fanout.Entry | None, *, now: float) -> None:
        """`entry` has been written to the client: a slow client's interval starts only now, so
        what queued up meanwhile is merged rather than sent one by one."""
        if entry is not None and mergeable(entry):
            self._mark(entry.event.uid, now)

    def _mark(self, uid: str, now: float) -> None:
        self._sent[uid] = now
        if len(self._sent) > _FORGET_AFTER:  # a long-lived namespace stream sees many batches
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.interval}


async def paced(
    entries: AsyncGenerator[fanout.Entry | None, None],
    *,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[fanout.Entry | None, None]:
    """`entries` (a Hub.follow) with each batch's counts-only events paced by a Pacer.

    While an event is held, the next entry is awaited in a task that outlives the wait, so
    the held event goes out on time without cancelling the watcher's read. Closing this
    closes `entries` (which releases the watcher).
    """
    pacer = Pacer(interval=interval)
    reading: asyncio.Future[fanout.Entry | None] | None = None
    try:
        while True:
            due = pacer.due()
            if due is None and reading is None:
                try:
                    entry = await anext(entries)
                except StopAsyncIteration:
                    break
            else:
                if reading is None:
                    reading = asyncio.ensure_future(anext(entries))
                timeout = None if due is None else max(0.0, due - clock())
                done, _ = await asyncio.wait({reading}, timeout=timeout)
                if not done:
                    for out in pacer.flush(now=clock()):
                        yield out
                        pacer.sent(out, now=clock())
                    continue
                finished, reading = reading, None
                try:
                    entry = finished.result()
                except StopAsyncIteration:
                    break
            for out in pacer.push(entry, now=clock()):
                yield out  # resumed once the stream wrote it (or handed it to the socket's buffer)
                pacer.sent(out, now=clock())
        for out in pacer.flush(now=clock()):  # the watcher lagged and ended: send what is held
            yield out
    finally:
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await reading
        await entries.aclose()
