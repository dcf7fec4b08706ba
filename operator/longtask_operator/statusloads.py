"""Reads (GETs) the LongTask statuses the status sync starts from, one task at a time.

A task the sync meets mid-way (not with its first Queued, see statussync.py) needs its
status from the apiserver before its events can be folded. Each GET runs in the
background, at most `loads` at once, so the reading of the stream and every other task go
on meanwhile. One task never holds back the others: a GET that fails (other than with 404,
or another object under that name, which mean the task is gone) parks that task only; it
is retried with exponential backoff and shown like a parked write (the
`longtask_operator_status_parked` gauge, a log line), and its events wait (statusheld.py
keeps them short).

It must not read or acknowledge the stream, fold events or write statuses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from longtask_contracts import logs
from longtask_operator import kube, loopguard, metrics, statuswrites
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)

_PARK_MAX_SECONDS = 10.0  # longest wait between two GETs of a parked task

Loaded = Callable[[str, statuswrites.TaskState, "dict[str, Any] | None"], None]


class Loader:
    def __init__(
        self, *, kube: kube.Kube, loads: int, interval: float, guard: loopguard.Guard, on_loaded: Loaded
    ) -> None:
        self.kube = kube
        self.guard = guard  # the status sync's: a failed GET is one item of its round
        self.interval = interval
        self.on_loaded = on_loaded  # told each task's status (None: gone) once it is read
        self._loads = asyncio.Semaphore(loads)  # GETs in flight at once
        self._running: set[asyncio.Future[None]] = set()  # kept referenced until they end

    def start(self, uid: str, task: statuswrites.TaskState) -> None:
        """Read `task`'s status in the background, until it is read or known gone."""
        future = asyncio.ensure_future(self._load(uid, task))
        self._running.add(future)
        future.add_done_callback(self._running.discard)

    async def _load(self, uid: str, task: statuswrites.TaskState) -> None:
        with logs.task(namespace=task.namespace, name=task.name, uid=uid):
            while True:
                async with self._loads:
                    try:
                        status = await self._get(uid, task)
                    except Exception as exc:
                        delay = self._park(task, exc)
                    else:
                        break
                await asyncio.sleep(delay)
        if task.load_failures:
            log.info("%s/%s: status read after %d failures", task.namespace, task.name, task.load_failures)
            task.load_failures = 0
            metrics.STATUS_PARKED.dec()
        self.on_loaded(uid, task, status)

    async def _get(self, uid: str, task: statuswrites.TaskState) -> dict[str, Any] | None:
        try:
            obj = await self.kube.get(namespace=task.namespace, name=task.name)
        except kubeerrors.NotFound:
            return None
        if obj["metadata"]["uid"] != uid:
            return None  # another object under that name: ours is gone
        return dict(obj.get("status") or {})

    def _park(self, task: statuswrites.TaskState, exc: Exception) -> float:
        task.load_failures += 1
        if task.load_failures == 1:
            metrics.STATUS_PARKED.inc()
        delay = float(min(_PARK_MAX_SECONDS, self.interval * 2**task.load_failures))
        self.guard.item_failed(
            exc,
            what=f"{task.namespace}/{task.name}: status read failed ({type(exc).__name__}, "
            f"{task.load_failures} in a row); retrying in {delay:.0f} s while other tasks go on",
        )
        return delay
