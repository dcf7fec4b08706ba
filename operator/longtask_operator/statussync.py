"""Mirrors worker events from the shared status stream into LongTask statuses and Events.

The loop reads a page of the stream (statusstream.py), folds each event into its task's
status (fold.py), starts the status writes that are due (statuswrites.py: coalesced,
backed off, at most `writers` at once) and the Events people look for (statusevents.py),
all in the background, then acknowledges the entries of tasks whose writes have landed and
reads on. SSE clients read the per-task streams and see every event regardless. An entry
is acknowledged only after the patch that covers it succeeded; an entry whose status could
not be read (a failed GET) is read again from the backlog, not acknowledged unapplied. The
backlog of unacknowledged entries is read once, page by page, so a parked task's entries
cannot pin the loop to its backlog.

Under a burst the cost per task stays flat: no GET for a new task. A task's first event is
its Queued for attempt 1; when the sync first meets a task with that event, and the task's
`synced` mark (names.synced, set with the XACK of its first written entries) is absent, no
entry of it was ever acknowledged, so all of its history is still in the stream from there
on, and its status is what those entries make it. One pipeline per XREADGROUP page asks for
the marks. Any other task (a Queued sent again after it ran, a task met mid-way) is read
from the apiserver once, when the sync first meets it.

It must not decide anything about a task (what follows a failure is the worker's and
maintenance.py's): it only reports, in the LongTask, what the workers reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import events
from longtask_operator import fold, kube, loopguard, metrics, statusevents, statusstream, statuswrites
from longtask_runtime import kubeerrors


class StatusSync:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        kube: kube.Kube,
        consumer: str,
        interval: float,
        writers: int = 64,
        on_queued: Callable[[str | None], None] = lambda pool: None,
        on_event: Callable[[events.TaskEvent], None] = lambda event: None,
        guard: loopguard.Guard | None = None,
    ) -> None:
        self.guard = guard or loopguard.Guard("status-sync")
        self.on_queued = on_queued  # told of every Queued event (the autoscaler wakes)
        self.on_event = on_event  # told of every event once (metrics: observe.py)
        self.kube = kube
        self.stream = statusstream.StatusStream(redis=redis, consumer=consumer)
        self.poster = statusevents.EventPoster(kube=kube)
        # 64 by default: fewer left a burst's statuses behind the clients' creates.
        self.writer = statuswrites.StatusWriter(
            kube=kube, poster=self.poster, interval=interval, writers=writers, guard=self.guard
        )
        self.tasks: dict[str, statuswrites.TaskState] = {}  # by uid: the tasks followed
        self._writes: set[asyncio.Future[None]] = set()  # kept referenced until they end
        self._folded_through = (0, 0)  # the highest entry id folded in so far

    async def run(self) -> None:
        """Consume forever: first unacknowledged entries (ours and orphans), then new ones."""
        while True:
            try:
                await self._fold_page(await self.stream.read())
                await self._flush_due()
                await self.stream.trim()
                self.guard.succeeded()
            except Exception as exc:  # what was read but not acknowledged is read again
                self.stream.start_over()
                await asyncio.sleep(self.guard.failed(exc))

    async def _fold_page(self, entries: list[tuple[bytes, dict[Any, Any]]]) -> None:
        """Fold one XREADGROUP page: one Redis round trip for all its new tasks, not one each."""
        # An entry folded before a re-read of the backlog is skipped: its task still holds the id.
        fresh = [(i, f) for i, f in entries if statusstream.entry_id(i) > self._folded_through]
        page = await self.stream.decode(fresh)
        unstarted = await self._unstarted(page)
        for entry_id, event in page:
            await self._fold(entry_id, event, unstarted=unstarted)
            # Only once folded: an entry whose GET failed is read again from the backlog.
            self._folded_through = max(self._folded_through, statusstream.entry_id(entry_id))

    async def _unstarted(self, page: statusstream.Page) -> set[str]:
        """The tasks new to the sync whose status needs no GET (module doc): met first with
        their first Queued, and never acknowledged; asked of Redis in one pipeline."""
        first: dict[str, events.TaskEvent] = {}
        for _, event in page:
            if event.uid not in self.tasks:
                first.setdefault(event.uid, event)
        uids = [uid for uid, e in first.items() if e.kind == events.Kind.QUEUED and e.attempt == 1]
        return await self.stream.unsynced(uids)

    async def _fold(self, entry_id: bytes, event: events.TaskEvent, *, unstarted: set[str]) -> None:
        task = self.tasks.get(event.uid)
        if task is None:  # the GET first, so one that fails leaves nothing behind
            status = {} if event.uid in unstarted else await self._load(event)
            # Its first write waits the coalescing interval too, so a task that queues,
            # runs and ends within `interval` costs one status patch, not two.
            task = self.tasks[event.uid] = statuswrites.TaskState(
                event.namespace,
                event.name,
                status=status,
                last_written=dict(status or {}),
                gone=status is None,
                last_write=time.monotonic(),
            )
        metrics.EVENTS.labels(kind=event.kind.value).inc()
        self.on_event(event)
        if event.kind == events.Kind.QUEUED:
            self.on_queued(event.pool)
        task.entry_ids.append(entry_id)
        if task.gone or task.status is None:
            return  # acked on the next flush; one GET told us, not one per entry
        new = fold.fold(task.status, event)
        if new is not None and new != task.status:
            if new.get("phase") != task.status.get("phase"):
                # Posted when the phase is reached, even if coalescing never writes it.
                self.poster.phase_reached(uid=event.uid, namespace=task.namespace, name=task.name, status=new)
            task.status, task.dirty = new, True

    async def _load(self, event: events.TaskEvent) -> dict[str, Any] | None:
        try:
            obj = await self.kube.get(namespace=event.namespace, name=event.name)
        except kubeerrors.NotFound:
            return None
        if obj["metadata"]["uid"] != event.uid:
            return None
        return dict(obj.get("status") or {})

    async def _flush_due(self) -> None:
        """Start the writes that are due, acknowledge what is written, forget finished tasks."""
        now = time.monotonic()
        for uid, task in self.tasks.items():
            if self.writer.due(task, now):
                task.writing = True
                self._in_background(self.writer.write(uid, task))
        covered: list[bytes] = []  # entries whose every effect is written: one XACK for all
        marks: list[str] = []  # tasks whose entries are acknowledged for the first time
        for uid, task in self.tasks.items():
            if not task.dirty and task.entry_ids:
                covered += task.entry_ids
                task.entry_ids = []
                if not task.synced:
                    marks.append(uid)
                    task.synced = True
        if covered:
            await self.stream.ack(covered, first_synced=marks)
        for uid, task in list(self.tasks.items()):
            if task.entry_ids or task.writing:
                continue  # a write landed during the XACK above: its entries go with the next
            if task.gone or (not task.dirty and statuswrites.finished(task.status)):
                del self.tasks[uid]  # finished or gone: nothing more to coalesce

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` without waiting for it: status writes must not hold up the reading of
        the stream (a slow patch would delay every other task's next one)."""
        future = asyncio.ensure_future(job)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)
