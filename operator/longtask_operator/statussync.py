"""Mirrors worker events from the shared status stream into LongTask statuses and Events.

Events arrive through a Redis consumer group, so an operator that restarts re-reads
what it had not yet written. Writes are coalesced: each task gets at most one status
patch per `interval` seconds, whatever its event rate, and its first patch waits the
interval too unless the task finished meanwhile, so a task that queues, runs and ends
within `interval` costs exactly one patch, written as soon as its end is read (a finished
status written by nobody has nothing left to coalesce). SSE clients read the per-task
streams and see every event regardless. An entry is
acknowledged only after the patch that covers it succeeded; an entry whose status could
not be read (a failed GET) is read again from the backlog, not acknowledged unapplied.

Kubernetes Events are posted only for what people look for in `kubectl describe`:
Retrying, Failed (saying if dead-lettered), Cancelled, and StatusWriteFailed below; the
routine Queued, Running and Succeeded hops are in the status and cost no request. An Event
is posted in the background when its phase is folded in, even if coalescing never writes
that phase (a retry that ran again within the interval).

Under a burst the cost per task stays flat: no GET for a new task. A task's first event is
its Queued for attempt 1; when the sync first meets a task with that event, and the task's
`synced` mark (names.synced, set with the XACK of its first written entries) is absent, no
entry of it was ever acknowledged, so all of its history is still in the stream from there
on, and its status is what those entries make it. One pipeline per XREADGROUP page asks for
the marks. Any other task (a Queued sent again after it ran, a task met mid-way) is read
from the apiserver once, when the sync first meets it. Up to `writers` patches go out at
once (64 by default: fewer left a burst's statuses behind the clients' creates); each loop
iteration starts the writes that are due and reads on without waiting for them, and
acknowledges the entries of tasks whose writes have landed.

One task never holds back the others: a task whose status write fails (other than with
404/409, which mean it is gone) is parked, retried with exponential backoff, and shown
(a Warning Event, the `longtask_operator_status_parked` gauge, a log line), while the
loop reads and writes every other task. The backlog of unacknowledged entries is read
once, page by page, so a parked task's entries cannot pin the loop to its backlog.

The stream is trimmed here, and only here: below the oldest entry the group has not
acknowledged (XTRIM MINID), so an operator that is down or behind loses nothing, and never
within the last minute, which the gateway's namespace streams may still be reading.
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

from longtask_contracts import events, ledger, logs, names
from longtask_operator import fold, kube, metrics
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)


_PARK_MAX_SECONDS = 10.0  # longest wait between two writes of a parked task
_TRIM_EVERY_SECONDS = 5.0
_TRIM_ROUNDS = 100
_KEEP_RECENT_MS = 60_000


@dataclass
class _Task:
    namespace: str
    name: str
    status: dict[str, Any] | None = None  # last known status; None once it is gone
    written: dict[str, Any] = field(default_factory=dict)  # what the apiserver has
    dirty: bool = False
    last_write: float = 0.0
    entry_ids: list[bytes] = field(default_factory=list)
    gone: bool = False  # the LongTask no longer exists: entries are only acknowledged
    failures: int = 0  # status writes failed in a row; > 0 means parked
    retry_at: float = 0.0  # monotonic time of a parked task's next write
    synced: bool = False  # its names.synced mark is written
    wrote: bool = False  # this operator has written its status (first writes wait; see _due)
    writing: bool = False  # a status write of it is on its way


def _id(entry_id: Any) -> tuple[int, int]:
    """A stream id as a comparable pair (ms, seq)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


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
    ) -> None:
        self.redis = redis
        self.on_queued = on_queued  # told of every Queued event (the autoscaler wakes)
        self.on_event = on_event  # told of every event once (metrics: observe.py)
        self.kube = kube
        self.consumer = consumer
        self.interval = interval
        self.tasks: dict[str, _Task] = {}
        self._writers = asyncio.Semaphore(writers)  # status patches in flight at once
        self._jobs: set[asyncio.Future[None]] = set()
        self._taken = (0, 0)  # the highest entry id folded in so far
        self._trimmed_at = 0.0

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
        backlog: Any = "0"  # where the next backlog page starts; None once it was read
        while True:
            try:
                if backlog == "0":
                    await self.ensure_group()
                    await self.adopt_orphans()
                reply: Any = await self.redis.xreadgroup(
                    names.STATUS_GROUP,
                    self.consumer,
                    {names.STATUS_STREAM: backlog or ">"},
                    count=1000,
                    block=None if backlog else 100,
                )
                entries = reply[0][1] if reply else []
                if backlog is not None:  # next page after the last entry, until none is left
                    backlog = entries[-1][0] if entries else None
                await self._take_page(entries)
                await self._flush_due()
                await self._trim()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or apiserver restarting: back off, then re-read
                log.exception("status sync failed; retrying")
                backlog = "0"
                await asyncio.sleep(1)

    async def _take_page(self, entries: list[tuple[bytes, dict[Any, Any]]]) -> None:
        """Fold one XREADGROUP page: one Redis round trip for all its new tasks, not one each."""
        page: list[tuple[bytes, events.TaskEvent]] = []
        malformed: list[bytes] = []
        for entry_id, fields in entries:
            if _id(entry_id) <= self._taken:
                continue  # folded before a re-read of the backlog; its task still holds the id
            try:
                page.append((entry_id, events.TaskEvent.decode(fields)))
            except ValueError:
                log.warning("dropping malformed status entry %r", entry_id)
                malformed.append(entry_id)
        if malformed:
            await self.redis.xack(names.STATUS_STREAM, names.STATUS_GROUP, *malformed)
        unstarted = await self._unsynced(page)
        for entry_id, event in page:
            await self._take(entry_id, event, unstarted=unstarted)
            # Only once folded: an entry whose GET failed is read again from the backlog.
            self._taken = max(self._taken, _id(entry_id))

    async def _unsynced(self, page: list[tuple[bytes, events.TaskEvent]]) -> set[str]:
        """The tasks new to the sync whose status needs no GET (module doc): met first with
        their first Queued, and never acknowledged; asked of Redis in one pipeline."""
        first: dict[str, events.TaskEvent] = {}
        for _, event in page:
            if event.uid not in self.tasks:
                first.setdefault(event.uid, event)
        uids = [uid for uid, e in first.items() if e.kind == events.Kind.QUEUED and e.attempt == 1]
        if not uids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for uid in uids:
            pipe.exists(names.synced(uid))
        found = await pipe.execute()
        return {uid for uid, synced in zip(uids, found, strict=True) if not synced}

    async def _take(self, entry_id: bytes, event: events.TaskEvent, *, unstarted: set[str]) -> None:
        task = self.tasks.get(event.uid)
        if task is None:  # the GET first, so one that fails leaves nothing behind
            status = {} if event.uid in unstarted else await self._load(event)
            # Its first write waits the coalescing interval too, so a task that queues,
            # runs and ends within `interval` costs one status patch, not two.
            task = self.tasks[event.uid] = _Task(
                event.namespace,
                event.name,
                status=status,
                written=dict(status or {}),
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
                self._post_event(uid=event.uid, task=task, status=new)
            task.status, task.dirty = new, True

    def _post_event(self, *, uid: str, task: _Task, status: dict[str, Any]) -> None:
        """A Kubernetes Event for a phase people look for (failed, retrying, cancelled).

        Posted when the phase is reached, even if coalescing never writes that status
        (a retry that started again within `interval`); routine hops get none (fold.py).
        """
        event = fold.event_message(status)
        if event is None:
            return
        message, warning = event
        self._background(
            self.kube.post_event(
                namespace=task.namespace,
                name=task.name,
                uid=uid,
                reason=str(status.get("phase")),
                message=message,
                warning=warning,
            )
        )

    def _background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` without waiting for it: status writes and Events must not hold up the
        reading of the stream (a slow patch would delay every other task's next one)."""
        future = asyncio.ensure_future(job)
        self._jobs.add(future)
        future.add_done_callback(self._jobs.discard)

    async def _load(self, event: events.TaskEvent) -> dict[str, Any] | None:
        try:
            obj = await self.kube.get(namespace=event.namespace, name=event.name)
        except kubeerrors.NotFound:
            return None
        if obj["metadata"]["uid"] != event.uid:
            return None
        return dict(obj.get("status") or {})

    async def _flush_due(self) -> None:
        now = time.monotonic()
        for uid, task in self.tasks.items():
            if self._due(task, now):
                task.writing = True
                self._background(self._write(uid, task))
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
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(names.STATUS_STREAM, names.STATUS_GROUP, *covered)
            for uid in marks:
                pipe.set(names.synced(uid), "1", ex=ledger.KEY_TTL_SECONDS)
            await pipe.execute()
        for uid, task in list(self.tasks.items()):
            if task.entry_ids or task.writing:
                continue  # a write landed during the XACK above: its entries go with the next
            if task.gone or (not task.dirty and _finished(task.status)):
                del self.tasks[uid]  # finished or gone: nothing more to coalesce

    def _due(self, task: _Task, now: float) -> bool:
        """Whether `task`'s status is to be written now: it changed, is not parked, and its
        last write (or, before its first, the moment the sync met it) is `interval` old, or
        it finished before its first write (nothing is left to coalesce)."""
        if not task.dirty or task.writing or task.status is None or now < task.retry_at:
            return False
        return now - task.last_write >= self.interval or (not task.wrote and _finished(task.status))

    async def _write(self, uid: str, task: _Task) -> None:
        """Write one task's status; a failure parks this task only (see the module doc)."""
        try:
            with logs.task(namespace=task.namespace, name=task.name, uid=uid):
                await self._write_logged(uid, task)
        finally:
            task.writing = False

    async def _write_logged(self, uid: str, task: _Task) -> None:
        assert task.status is not None
        async with self._writers:
            try:
                await self._write_now(uid, task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._park(uid, task, exc)
                return
        if task.failures:
            log.info(
                "%s/%s: status written again after %d failures", task.namespace, task.name, task.failures
            )
            task.failures, task.retry_at = 0, 0.0
            metrics.STATUS_PARKED.dec()

    def _park(self, uid: str, task: _Task, exc: Exception) -> None:
        task.failures += 1
        delay = min(_PARK_MAX_SECONDS, self.interval * 2**task.failures)
        task.retry_at = time.monotonic() + delay
        reason = getattr(exc, "reason", None) or type(exc).__name__
        body = str(getattr(exc, "body", "") or exc)[:512]
        log.warning(
            "%s/%s: status write failed (%s, %d in a row); retrying in %.0f s while other tasks go on: %s",
            task.namespace, task.name, reason, task.failures, delay, body,
        )  # fmt: skip
        metrics.STATUS_WRITE_FAILURES.inc()
        if task.failures == 1:
            metrics.STATUS_PARKED.inc()
            self._background(
                self.kube.post_event(
                    namespace=task.namespace,
                    name=task.name,
                    uid=uid,
                    reason="StatusWriteFailed",
                    message=f"the operator cannot write this task's status ({reason}): {body}; "
                    "it retries with backoff, other tasks are not affected",
                    warning=True,
                )
            )

    async def _trim(self) -> None:
        """Drop entries every consumer of the group has acknowledged, at most every few seconds."""
        now = time.monotonic()
        if now - self._trimmed_at < _TRIM_EVERY_SECONDS:
            return
        self._trimmed_at = now
        summary: Any = await self.redis.xpending(names.STATUS_STREAM, names.STATUS_GROUP)
        groups: Any = await self.redis.xinfo_groups(names.STATUS_STREAM)
        ours = next((g for g in groups if _text(g.get("name")) == names.STATUS_GROUP), None)
        if ours is None:
            return
        # Everything below the oldest pending entry, or up to the last delivered one, is read
        # and acknowledged; the last delivered entry itself is kept (MINID keeps >= id).
        floor = summary.get("min") if summary.get("pending") else ours.get("last-delivered-id")
        # Keep the last minute whatever the group read: the gateway's namespace streams
        # follow this stream too, and catch up from it after a reconnect.
        recent = f"{int(time.time() * 1000) - _KEEP_RECENT_MS}-0"
        if floor and _id(floor) > _id(recent):
            floor = recent
        if floor and _id(floor) > (0, 0):
            # Approximate trimming removes whole nodes, at most 10,000 entries a call (Redis'
            # default LIMIT), so Redis never stalls on one call; a long backlog takes several.
            for _ in range(_TRIM_ROUNDS):
                removed = await self.redis.xtrim(names.STATUS_STREAM, minid=_text(floor), approximate=True)
                if not removed:
                    break

    async def _write_now(self, uid: str, task: _Task) -> None:
        """Merge-patch what changed since the last successful write."""
        status = task.status
        assert status is not None
        try:
            # A merge patch only deletes the keys it sets to null.
            patch = {**dict.fromkeys(task.written.keys() - status.keys()), **status}
            await self.kube.patch_status(namespace=task.namespace, name=task.name, uid=uid, status=patch)
        except kubeerrors.NotFound:
            task.status, task.dirty, task.gone = None, False, True
            return
        metrics.STATUS_PATCHES.inc()
        task.written = dict(status)
        task.last_write, task.wrote = time.monotonic(), True
        # Events folded in while the patch was on its way are for the next write (fold.fold
        # returns a new dict for every change).
        task.dirty = task.status is not status


def _finished(status: dict[str, Any] | None) -> bool:
    """Whether a folded status is terminal (fold.py sets finishedAt then, and only then)."""
    return bool(status and status.get("finishedAt"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
