"""Feeds the operator's gauges and histograms that no single handler owns; it only reads.

- every `interval`: each pool's queued and running attempts and the age of its oldest
  queued message (for every pool with work, WorkerPool or not), the status sync's lag;
- per worker event (status sync): dispatch latency, retries, dead-letter additions;
- per LongTask watch event (handlers): LongTasks by phase.

It must never write Redis or Kubernetes, nor decide anything: a metric must not change
what the platform does.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import events, names, phases, wire
from longtask_operator import loopguard, metrics, workload

_RESCAN_SECONDS = 60.0  # how often queue keys are looked for (pools whose work predates us)
_MAX_QUEUED = 100_000  # queued attempts remembered for dispatch latency (oldest dropped)


class Observer:
    def __init__(self, *, redis: aioredis.Redis, workload: workload.Workload, interval: float) -> None:
        self.redis = redis
        self.workload = workload
        self.interval = interval
        self.pools: set[str] = set()
        self._scanned_at = 0.0
        self._queued: collections.OrderedDict[str, tuple[float, str]] = collections.OrderedDict()
        self._phase_of: dict[str, phases.Phase] = {}
        self._phases: collections.Counter[phases.Phase] = collections.Counter()
        self.guard = loopguard.Guard("metrics", first_delay=interval)
        for phase in phases.Phase:
            metrics.TASKS.labels(phase=phase.value).set(0)

    # -- per event --------------------------------------------------------------------
    def on_event(self, event: events.TaskEvent) -> None:
        """A worker event the status sync took from the stream (each one once)."""
        if event.kind == events.Kind.QUEUED:
            pool = event.pool or "default"
            self.pools.add(pool)
            self._queued[event.uid] = (event.at, pool)
            self._queued.move_to_end(event.uid)
            while len(self._queued) > _MAX_QUEUED:
                self._queued.popitem(last=False)
        elif event.kind == events.Kind.STARTED:
            queued = self._queued.pop(event.uid, None)
            if queued is not None:
                at, pool = queued
                latency = metrics.DISPATCH_LATENCY.labels(pool=metrics.pool_label(pool))
                latency.observe(max(0.0, event.at - at))
        elif event.kind == events.Kind.RETRYING:
            metrics.RETRIES.inc()
        if event.terminal:
            self._queued.pop(event.uid, None)
            if event.kind == events.Kind.FAILED and event.dead_lettered:
                metrics.DLQ_ADDED.inc()

    def on_longtask(self, event_type: str | None, uid: str, status: dict[str, Any]) -> None:
        """A LongTask watch event: keep the count of LongTasks by phase."""
        before = self._phase_of.pop(uid, None)
        if before is not None:
            self._phases[before] -= 1
            metrics.TASKS.labels(phase=before.value).set(self._phases[before])
        if event_type == "DELETED":
            return
        phase = phases.parse(status.get("phase"))
        self._phase_of[uid] = phase
        self._phases[phase] += 1
        metrics.TASKS.labels(phase=phase.value).set(self._phases[phase])

    # -- the loop -----------------------------------------------------------------------
    async def run(self, extra_pools: Callable[[], Iterable[str]] = lambda: ()) -> None:
        """Read the figures every `interval`; `extra_pools()` names pools to include always
        (the autoscaler's)."""
        while True:
            try:
                await self.once(time.time(), set(extra_pools()))
                self.guard.succeeded()
                pause = self.interval
            except Exception as exc:  # the next round, later if it keeps failing
                pause = self.guard.failed(exc)
            await asyncio.sleep(pause)

    async def once(self, now: float, extra: set[str] | None = None) -> None:
        if now - self._scanned_at >= _RESCAN_SECONDS:
            self._scanned_at = now
            self.pools |= await self._queue_pools()
        pools = sorted(self.pools | (extra or set()))
        loads = await self.workload.read(pools)
        oldest = await self._oldest_queued(pools, now)
        by_label: dict[str, list[float]] = {}
        for pool in pools:
            figures = by_label.setdefault(metrics.pool_label(pool), [0.0, 0.0, 0.0, 0.0])
            figures[0] += loads[pool].queued
            figures[1] += loads[pool].in_flight
            figures[2] = max(figures[2], oldest.get(pool, 0.0))
            figures[3] += loads[pool].items
        for label, (queued, running, age, items) in by_label.items():
            metrics.POOL_ITEMS_QUEUED.labels(pool=label).set(items)
            metrics.POOL_QUEUED.labels(pool=label).set(queued)
            metrics.POOL_RUNNING.labels(pool=label).set(running)
            metrics.POOL_OLDEST_QUEUED.labels(pool=label).set(age)
        await self._status_sync_lag(now)

    async def _queue_pools(self) -> set[str]:
        """Pools whose queue has a list in Redis (work queued before this operator started)."""
        found = set()
        async for key in self.redis.scan_iter(match=f"{names.QUEUE_PREFIX}*", count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            found.add(text[len(names.QUEUE_PREFIX) :].split("\x06\x16", 1)[0])
        return found

    async def _oldest_queued(self, pools: list[str], now: float) -> dict[str, float]:
        """Seconds the oldest message of each pool has waited: the tail of each priority list
        (kombu pushes on the left, workers pop on the right) carries its queued-at header."""
        pipe = self.redis.pipeline(transaction=False)
        for pool in pools:
            for key in names.queue_lists(pool):
                pipe.lindex(key, -1)
        tails = await pipe.execute()
        per = len(names.PRIORITY_STEPS)
        ages = {}
        for i, pool in enumerate(pools):
            times = [t for raw in tails[i * per : (i + 1) * per] if (t := queued_at(raw)) is not None]
            ages[pool] = max(0.0, now - min(times)) if times else 0.0
        return ages

    async def _status_sync_lag(self, now: float) -> None:
        """How far the status sync is behind: its oldest pending entry, or the first entry it
        has not read yet, whichever is older."""
        try:
            groups: Any = await self.redis.xinfo_groups(names.STATUS_STREAM)
        except aioredis.ResponseError:  # no stream yet
            groups = []
        ours = next((g for g in groups if wire.text(g.get("name")) == names.STATUS_GROUP), None)
        if ours is None:
            metrics.STATUS_SYNC_LAG.set(0)
            metrics.STATUS_SYNC_BACKLOG.set(0)
            return
        oldest: list[int] = []
        summary: Any = await self.redis.xpending(names.STATUS_STREAM, names.STATUS_GROUP)
        if summary.get("pending"):
            oldest.append(_ms(summary["min"]))
        unread: Any = await self.redis.xrange(
            names.STATUS_STREAM, min=f"({wire.text(ours.get('last-delivered-id'))}", count=1
        )
        if unread:
            oldest.append(_ms(unread[0][0]))
        metrics.STATUS_SYNC_LAG.set(max(0.0, now - min(oldest) / 1000) if oldest else 0.0)
        metrics.STATUS_SYNC_BACKLOG.set(int(summary.get("pending") or 0) + int(ours.get("lag") or 0))


def queued_at(raw: Any) -> float | None:
    """The queued-at header of a kombu message (JSON), or None (absent, or not ours)."""
    if not raw:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(names.QUEUED_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def _ms(entry_id: Any) -> int:
    return int(wire.text(entry_id).partition("-")[0])
