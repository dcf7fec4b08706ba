"""Mirrors worker events from the shared status stream into LongTask statuses and Events.

The loop reads a page of the stream (statusstream.py), folds each event into its task's
status (fold.py), starts the status writes that are due (statuswrites.py: coalesced,
backed off, at most `writers` at once) and the Events people look for (statusevents.py),
all in the background, then acknowledges the entries of tasks whose writes have landed and
reads on. SSE clients read the per-task streams and see every event regardless.

An entry is acknowledged once its effect is safe: after the status write that covers it,
or, for a task whose write or GET is parked, together with its held record
(statusheld.py: the folded state, stored in the same MULTI as the XACK), so a stuck task
keeps at most one page of entries pending and the stream is trimmed past it. A restarted
operator starts from the held records. Every entry read is folded exactly once: a re-read
of the backlog (after a failure, or when trimming found entries pending under another
consumer, taken over then) skips only the entries folded and not yet acknowledged, so a
taken-over entry is folded and acknowledged like any other.

Under a burst the cost per task stays flat: no GET for a new task. A task's first event is
its Queued for attempt 1; when the sync first meets a task with that event, and the task's
`synced` mark (names.synced, set with the XACK of its first acknowledged entries) is
absent, no entry of it was ever acknowledged, so all of its history is still in the stream
from there on, and its status is what those entries make it. One pipeline per XREADGROUP
page asks for the marks. Any other task (a Queued sent again after it ran, a task met
mid-way) is read from the apiserver once, when the sync first meets it, in the background
(statusloads.py): its events wait meanwhile, and a GET that fails holds back that task only.

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
from longtask_operator import (
    fold,
    kube,
    loopguard,
    metrics,
    statusevents,
    statusheld,
    statusloads,
    statusstream,
    statuswrites,
)


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
        self.interval = interval
        self.stream = statusstream.StatusStream(redis=redis, consumer=consumer)
        self.poster = statusevents.EventPoster(kube=kube)
        # 64 by default: fewer left a burst's statuses behind the clients' creates.
        self.writer = statuswrites.StatusWriter(
            kube=kube, poster=self.poster, interval=interval, writers=writers, guard=self.guard
        )
        self.loader = statusloads.Loader(
            kube=kube, loads=writers, interval=interval, guard=self.guard, on_loaded=self._loaded
        )
        self.tasks: dict[str, statuswrites.TaskState] = {}  # by uid: the tasks followed
        self._writes: set[asyncio.Future[None]] = set()  # kept referenced until they end
        self._resumed = False  # the held records are read (once, before the first page)

    async def run(self) -> None:
        """Consume forever: first the held records, then unacknowledged entries (ours and
        orphans), then new ones."""
        while True:
            try:
                if not self._resumed:
                    await self._resume()
                entries, backlog = await self.stream.read()
                await self._fold_page(entries, backlog=backlog)
                await self._flush_due()
                await self.stream.trim()
                self.guard.succeeded()
            except Exception as exc:  # what was read but not acknowledged is read again
                self.stream.start_over()
                await asyncio.sleep(self.guard.failed(exc))

    async def _resume(self) -> None:
        """Follow the tasks a previous operator held (statusheld.py) before reading on: their
        later entries fold onto what it had folded."""
        now = time.monotonic()
        for uid, raw in (await self.stream.held()).items():
            if uid not in self.tasks:
                task = self.tasks[uid] = statusheld.restore(raw, now=now)
                if not task.loaded:
                    self.loader.start(uid, task)
        self._resumed = True

    async def _fold_page(self, entries: list[tuple[bytes, dict[Any, Any]]], *, backlog: bool) -> None:
        """Fold one XREADGROUP page: one Redis round trip for all its new tasks, not one each."""
        if backlog:  # entries folded before (still pending with their task) are not folded twice
            folded = {i for task in self.tasks.values() for i in task.entry_ids}
            entries = [(i, f) for i, f in entries if i not in folded]
        page = await self.stream.decode(entries)
        unstarted = await self._unstarted(page)
        for entry_id, event in page:
            self._fold(entry_id, event, unstarted=unstarted)

    async def _unstarted(self, page: statusstream.Page) -> set[str]:
        """The tasks new to the sync whose status needs no GET (module doc): met first with
        their first Queued, and never acknowledged; asked of Redis in one pipeline."""
        first: dict[str, events.TaskEvent] = {}
        for _, event in page:
            if event.uid not in self.tasks:
                first.setdefault(event.uid, event)
        uids = [uid for uid, e in first.items() if e.kind == events.Kind.QUEUED and e.attempt == 1]
        return await self.stream.unsynced(uids)

    def _fold(self, entry_id: bytes, event: events.TaskEvent, *, unstarted: set[str]) -> None:
        task = self.tasks.get(event.uid)
        if task is None:
            # Its first write waits the coalescing interval too, so a task that queues,
            # runs and ends within `interval` costs one status patch, not two.
            task = self.tasks[event.uid] = statuswrites.TaskState(
                event.namespace,
                event.name,
                status={},
                loaded=event.uid in unstarted,
                last_write=time.monotonic(),
            )
            if not task.loaded:
                self.loader.start(event.uid, task)
        metrics.EVENTS.labels(kind=event.kind.value).inc()
        self.on_event(event)
        if event.kind == events.Kind.QUEUED:
            self.on_queued(event.pool)
        task.entry_ids.append(entry_id)
        if task.gone:
            return  # acked on the next flush; one GET told us, not one per entry
        if not task.loaded:
            task.waiting = statusheld.wait(task.waiting, event)
            return
        self._apply(event.uid, task, event)

    def _apply(self, uid: str, task: statuswrites.TaskState, event: events.TaskEvent) -> None:
        assert task.status is not None
        new = fold.fold(task.status, event)
        if new is not None and new != task.status:
            if new.get("phase") != task.status.get("phase"):
                # Posted when the phase is reached, even if coalescing never writes it.
                self.poster.phase_reached(uid=uid, namespace=task.namespace, name=task.name, status=new)
            task.status, task.dirty = new, True

    def _loaded(self, uid: str, task: statuswrites.TaskState, status: dict[str, Any] | None) -> None:
        """A task's status is read (None: it is gone): fold what waited for it."""
        waiting, task.waiting, task.loaded = task.waiting, [], True
        if status is None:
            task.status, task.dirty, task.gone = None, False, True
            return
        task.status, task.last_written = status, dict(status)
        for event in waiting:
            self._apply(uid, task, event)

    async def _flush_due(self) -> None:
        """Start the writes that are due, acknowledge what is safe (module doc), forget
        finished tasks."""
        now = time.monotonic()
        for uid, task in self.tasks.items():
            if self.writer.due(task, now):
                task.writing = True
                self._in_background(self.writer.write(uid, task))
        await self._acknowledge()
        for uid, task in list(self.tasks.items()):
            if task.entry_ids or task.writing or task.held or not task.loaded:
                continue  # a write landed during the XACK: its entries go with the next
            if task.gone or (not task.dirty and statuswrites.finished(task.status)):
                del self.tasks[uid]  # finished or gone: nothing more to coalesce

    async def _acknowledge(self) -> None:
        """One MULTI for all: the entries whose every effect is written, those of parked
        tasks with their held records, and the held records written since."""
        covered: list[bytes] = []
        marks: list[str] = []  # tasks whose entries are acknowledged for the first time
        hold: dict[str, str] = {}
        release: list[str] = []
        acted: list[tuple[statuswrites.TaskState, int, bool]] = []  # (task, entries, held)
        for uid, task in self.tasks.items():
            settled = task.loaded and not task.dirty  # written, or gone
            if settled and (task.entry_ids or task.held):
                if task.held:
                    release.append(uid)
            elif task.entry_ids and (task.failures or task.load_failures):
                hold[uid] = statusheld.record(task)
            else:
                continue
            covered += task.entry_ids
            if task.entry_ids and not task.synced:
                marks.append(uid)
            acted.append((task, len(task.entry_ids), uid in hold))
        if not acted:
            return
        await self.stream.ack(covered, first_synced=marks, hold=hold, release=release)
        for task, count, held in acted:
            # Only what was acknowledged: nothing is folded during the XACK, but be exact.
            del task.entry_ids[:count]
            task.synced = task.synced or count > 0
            task.held = held

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` without waiting for it: status writes must not hold up the reading of
        the stream (a slow patch would delay every other task's next one)."""
        future = asyncio.ensure_future(job)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)
