"""Coalesced, backed-off LongTask status writes, one task at a time, for the status sync.

Each task gets at most one status patch per `interval` seconds, whatever its event rate,
and its first patch waits the interval too unless the task finished meanwhile, so a task
that queues, runs and ends within `interval` costs exactly one patch, written as soon as
its end is read (a finished status written by nobody has nothing left to coalesce). Up to
`writers` patches go out at once. One task never holds back the others: a task whose
status write fails (other than with 404/409, which mean it is gone) is parked, retried
with exponential backoff, and shown (a Warning Event, the `longtask_operator_status_parked`
gauge, a log line).

It must not read or acknowledge the stream, nor fold events (statussync.py does both).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from longtask_contracts import events, logs
from longtask_operator import kube, loopguard, metrics, statusevents
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)

_PARK_MAX_SECONDS = 10.0  # longest wait between two writes of a parked task


@dataclass
class TaskState:
    """What the status sync knows of one task it follows."""

    namespace: str
    name: str
    status: dict[str, Any] | None = None  # last known status; None once it is gone
    loaded: bool = True  # its status is known (read, or none needed); False while its GET is due
    waiting: list[events.TaskEvent] = field(default_factory=list)  # read before it was loaded
    load_failures: int = 0  # GETs failed in a row; > 0 means its load is parked
    last_written: dict[str, Any] = field(default_factory=dict)  # what the apiserver has
    dirty: bool = False
    last_write: float = 0.0
    entry_ids: list[bytes] = field(default_factory=list)
    gone: bool = False  # the LongTask no longer exists: entries are only acknowledged
    failures: int = 0  # status writes failed in a row; > 0 means parked
    retry_at: float = 0.0  # monotonic time of a parked task's next write
    synced: bool = False  # its names.synced mark is written
    has_written: bool = False  # this operator has written its status (first writes wait; see due)
    writing: bool = False  # a status write of it is on its way
    held: bool = False  # its folded state is in names.STATUS_HELD (statusheld.py)


def finished(status: dict[str, Any] | None) -> bool:
    """Whether a folded status is terminal (fold.py sets finishedAt then, and only then)."""
    return bool(status and status.get("finishedAt"))


class StatusWriter:
    def __init__(
        self,
        *,
        kube: kube.Kube,
        poster: statusevents.EventPoster,
        interval: float,
        writers: int,
        guard: loopguard.Guard,
    ) -> None:
        self.kube = kube
        self.guard = guard  # the status sync's: a failed write is one item of its round
        self.poster = poster
        self.interval = interval
        self._writers = asyncio.Semaphore(writers)  # status patches in flight at once

    def due(self, task: TaskState, now: float) -> bool:
        """Whether `task`'s status is to be written now: it changed, is not parked, and its
        last write (or, before its first, the moment the sync met it) is `interval` old, or
        it finished before its first write (nothing is left to coalesce)."""
        if not task.dirty or task.writing or not task.loaded or task.status is None or now < task.retry_at:
            return False
        return now - task.last_write >= self.interval or (not task.has_written and finished(task.status))

    async def write(self, uid: str, task: TaskState) -> None:
        """Write one task's status; a failure parks this task only (see the module doc)."""
        try:
            with logs.task(namespace=task.namespace, name=task.name, uid=uid):
                await self._write_logged(uid, task)
        finally:
            task.writing = False

    async def _write_logged(self, uid: str, task: TaskState) -> None:
        assert task.status is not None
        async with self._writers:
            try:
                await self._write_now(uid, task)
            except Exception as exc:
                self._park(uid, task, exc)
                return
        if task.failures:
            log.info(
                "%s/%s: status written again after %d failures", task.namespace, task.name, task.failures
            )
            task.failures, task.retry_at = 0, 0.0
            metrics.STATUS_PARKED.dec()

    def _park(self, uid: str, task: TaskState, exc: Exception) -> None:
        task.failures += 1
        delay = min(_PARK_MAX_SECONDS, self.interval * 2**task.failures)
        task.retry_at = time.monotonic() + delay
        reason = type(exc).__name__  # a kubeerrors class (Invalid, Unavailable, ...) or the bug's type
        body = str(exc)[:512]  # what was reached and the apiserver's words
        self.guard.item_failed(
            exc,
            what=f"{task.namespace}/{task.name}: status write failed ({reason}, {task.failures} in a row); "
            f"retrying in {delay:.0f} s while other tasks go on",
        )
        metrics.STATUS_WRITE_FAILURES.inc()
        if task.failures == 1:
            metrics.STATUS_PARKED.inc()
            self.poster.write_failed(
                uid=uid, namespace=task.namespace, name=task.name, reason=reason, body=body
            )

    async def _write_now(self, uid: str, task: TaskState) -> None:
        """Merge-patch what changed since the last successful write."""
        status = task.status
        assert status is not None
        try:
            # A merge patch only deletes the keys it sets to null.
            patch = {**dict.fromkeys(task.last_written.keys() - status.keys()), **status}
            await self.kube.patch_status(namespace=task.namespace, name=task.name, uid=uid, status=patch)
        except kubeerrors.NotFound:
            task.status, task.dirty, task.gone = None, False, True
            return
        metrics.STATUS_PATCHES.inc()
        task.last_written = dict(status)
        task.last_write, task.has_written = time.monotonic(), True
        # Events folded in while the patch was on its way are for the next write (fold.fold
        # returns a new dict for every change).
        task.dirty = task.status is not status
