"""Mirrors worker events from the shared status stream into LongTask statuses and Events.

Events arrive through a Redis consumer group, so an operator that restarts re-reads
what it had not yet written. Writes are coalesced: each task gets at most one status
patch per `interval` seconds, whatever its event rate; SSE clients read the per-task
streams and see every event regardless. An entry is acknowledged only after the patch
that covers it succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from longtask_contracts import events, names
from longtask_operator import fold, kube, metrics

log = logging.getLogger(__name__)


@dataclass
class _Task:
    namespace: str
    name: str
    status: dict[str, Any] | None = None  # last known status; None until loaded
    written: dict[str, Any] = field(default_factory=dict)  # what the apiserver has
    dirty: bool = False
    last_write: float = 0.0
    entry_ids: list[bytes] = field(default_factory=list)


class StatusSync:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        kube: kube.Kube,
        consumer: str,
        interval: float,
        on_queued: Callable[[str | None], None] = lambda pool: None,
    ) -> None:
        self.redis = redis
        self.on_queued = on_queued  # told of every Queued event (the autoscaler wakes)
        self.kube = kube
        self.consumer = consumer
        self.interval = interval
        self.tasks: dict[str, _Task] = {}
        self._writers = asyncio.Semaphore(16)  # concurrent status patches after a burst
        self._jobs: set[asyncio.Future[None]] = set()

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(names.STATUS_STREAM, names.STATUS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def adopt_orphans(self) -> None:
        """Take over entries a previous operator (another pod, another name) left unacked.

        One operator runs per cluster (Kopf standalone), so whatever is pending under any
        other consumer name belongs to an operator that is gone.
        """
        cursor: Any = "0-0"
        while True:
            # Without JUSTID: redis-py then returns [next cursor, entries, deleted ids].
            reply: Any = await self.redis.xautoclaim(
                names.STATUS_STREAM,
                names.STATUS_GROUP,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=1000,
            )
            cursor = reply[0]
            if cursor in (b"0-0", "0-0"):
                return

    async def run(self) -> None:
        """Consume forever: first unacknowledged entries (ours and orphans), then new ones."""
        backlog = True
        while True:
            try:
                if backlog:
                    await self.ensure_group()
                    await self.adopt_orphans()
                start = "0" if backlog else ">"
                reply: Any = await self.redis.xreadgroup(
                    names.STATUS_GROUP,
                    self.consumer,
                    {names.STATUS_STREAM: start},
                    count=1000,
                    block=None if backlog else 100,
                )
                entries = reply[0][1] if reply else []
                backlog = backlog and bool(entries)
                for entry_id, fields in entries:
                    await self._take(entry_id, fields)
                await self._flush_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or apiserver restarting: back off, then re-read
                log.exception("status sync failed; retrying")
                backlog = True
                await asyncio.sleep(1)

    async def _take(self, entry_id: bytes, fields: dict[Any, Any]) -> None:
        try:
            event = events.TaskEvent.decode(fields)
        except ValueError:
            log.warning("dropping malformed status entry %r", entry_id)
            await self.redis.xack(names.STATUS_STREAM, names.STATUS_GROUP, entry_id)
            return
        metrics.EVENTS.labels(kind=event.kind.value).inc()
        if event.kind == events.Kind.QUEUED:
            self.on_queued(event.pool)
        task = self.tasks.setdefault(event.uid, _Task(event.namespace, event.name))
        task.entry_ids.append(entry_id)
        if task.status is None:
            if (
                event.kind == events.Kind.QUEUED
                and event.attempt == 1
                and not await self.redis.exists(names.started(event.uid), names.done(event.uid))
            ):
                task.status = {}  # never started: its whole history follows in this stream; no GET
            else:
                task.status = await self._load(event)
            task.written = dict(task.status or {})
        if task.status is None:
            return  # gone: acked on the next flush
        new = fold.fold(task.status, event)
        if new is not None and new != task.status:
            if new.get("phase") != task.status.get("phase"):
                # Every phase change gets its Event, even when coalescing skips its status.
                message, warning = fold.event_message(new)
                self._background(
                    self.kube.post_event(
                        namespace=task.namespace,
                        name=task.name,
                        uid=event.uid,
                        reason=str(new.get("phase")),
                        message=message,
                        warning=warning,
                    )
                )
            task.status, task.dirty = new, True

    def _background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` without waiting for it (Events must not slow status mirroring down)."""
        future = asyncio.ensure_future(job)
        self._jobs.add(future)
        future.add_done_callback(self._jobs.discard)

    async def _load(self, event: events.TaskEvent) -> dict[str, Any] | None:
        try:
            obj = await self.kube.get(namespace=event.namespace, name=event.name)
        except kube.Gone:
            return None
        if obj["metadata"]["uid"] != event.uid:
            return None
        return dict(obj.get("status") or {})

    async def _flush_due(self) -> None:
        now = time.monotonic()
        due = [
            (uid, t)
            for uid, t in self.tasks.items()
            if t.dirty and t.status is not None and now - t.last_write >= self.interval
        ]
        await asyncio.gather(*(self._write(uid, task) for uid, task in due))
        for uid, task in list(self.tasks.items()):
            if not task.dirty and task.entry_ids:
                await self.redis.xack(names.STATUS_STREAM, names.STATUS_GROUP, *task.entry_ids)
                task.entry_ids.clear()
            if task.status is None or (not task.dirty and task.status.get("finishedAt")):
                del self.tasks[uid]  # finished or gone: nothing more to coalesce

    async def _write(self, uid: str, task: _Task) -> None:
        assert task.status is not None
        async with self._writers:
            await self._write_now(uid, task)

    async def _write_now(self, uid: str, task: _Task) -> None:
        assert task.status is not None
        try:
            # A merge patch only deletes the keys it sets to null.
            patch = {**dict.fromkeys(task.written.keys() - task.status.keys()), **task.status}
            await self.kube.patch_status(namespace=task.namespace, name=task.name, uid=uid, status=patch)
        except kube.Gone:
            task.status, task.dirty = None, False
            return
        metrics.STATUS_PATCHES.inc()
        task.written = dict(task.status)
        task.dirty, task.last_write = False, time.monotonic()
