"""Finds what no LongTask watch event shows, every `sweep_seconds`, and repairs it.

- unfinished tasks the watch saw a while ago whose first attempt is still not sent (its
  sender died half-way, or Redis was down): read again and dispatched;
- tasks Redis still runs or queues whose LongTask is gone (deleted while the operator was
  down): forgotten, so a queued attempt is refused by the worker's claim and a running
  one is cancelled. The watch forgets most of them at once, at the end of each LIST
  (taskwatch.py); this finds the rest: a task first sent after a LIST began, or sent
  again by a sender stalled past its tombstone.

It reads the watch's inventory of unfinished tasks (taskwatch.py) and never changes what
the watch follows; it must not write statuses (statussync.py does) nor decide retries
(maintenance.py). Each sweep reads at most GETS_PER_SWEEP LongTasks from the apiserver.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from celery import Celery

from longtask_contracts import ledger, names, wire
from longtask_operator import dispatch, kube, loopguard, metrics, scope, taskwatch
from longtask_runtime import kubeerrors, sending

log = logging.getLogger(__name__)

# A first send older than this that left no guard behind is looked at again (sending.py
# holds the guard "sending" for at most SENDING_SECONDS before it runs out).
RESEND_AFTER_SECONDS = float(sending.SENDING_SECONDS)
# LongTasks read from the apiserver per sweep, at most (the rest wait for the next one).
GETS_PER_SWEEP = 100


class _GetBudget:
    """The apiserver reads one sweep may still make."""

    def __init__(self, reads: int) -> None:
        self.left = reads

    def spend(self) -> bool:
        """Take one read; False once none is left."""
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class TaskSweep:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        celery: Celery,
        kube: kube.Kube,
        watch: taskwatch.TaskWatch,
        sweep_seconds: float = 15.0,
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.kube = kube
        self.watch = watch  # its inventory of unfinished tasks and its namespaces
        self.sweep_seconds = sweep_seconds
        self._suspects: set[str] = set()  # in Redis, not seen by the watch, at the last sweep
        self._started = time.monotonic()
        self.guard = loopguard.Guard("task-sweep", first_delay=sweep_seconds)

    async def run(self) -> None:
        pause = self.sweep_seconds
        while True:
            await asyncio.sleep(pause)
            try:
                await self.sweep()
                self.guard.succeeded()
                pause = self.sweep_seconds
            except Exception as exc:  # the next sweep, later if it keeps failing
                pause = self.guard.failed(exc)

    async def sweep(self) -> None:
        reads = _GetBudget(GETS_PER_SWEEP)
        await self._send_unsent(reads)
        await self._forget_orphans(reads)

    async def _send_unsent(self, reads: _GetBudget) -> None:
        """Dispatch unfinished tasks whose first attempt no sender finished sending."""
        now = time.monotonic()
        due = [
            uid
            for uid, t in self.watch.unfinished.items()
            if not t.sent and now - t.seen >= RESEND_AFTER_SECONDS
        ]
        if not due:
            return
        pipe = self.redis.pipeline(transaction=False)
        for uid in due:
            pipe.get(names.dispatch_guard(uid))
        guards = await pipe.execute()
        for uid, guard in zip(due, guards, strict=True):
            task = self.watch.unfinished.get(uid)
            if task is None:
                continue
            if guard is not None:
                task.sent = wire.text(guard) != sending.SENDING
                continue
            if not reads.spend():
                return
            try:
                obj = await self.kube.get(namespace=task.namespace, name=task.name)
            except kubeerrors.NotFound:
                continue  # its DELETED event follows
            if obj["metadata"]["uid"] == uid:
                log.warning("%s/%s: its first attempt was never sent; sending it", task.namespace, task.name)
                await taskwatch.reconcile(
                    redis=self.redis, celery=self.celery, kube=self.kube, body=obj, pools=self.watch.pools
                )
                metrics.SWEPT.labels(kind="unsent").inc()

    async def _forget_orphans(self, reads: _GetBudget) -> None:
        """Forget tasks Redis holds unfinished whose LongTask is gone. A uid counts only if it
        was missing from the watch at two sweeps in a row (a task the gateway sent may reach
        Redis before its ADDED event reaches us), only once the watch had time to list every
        LongTask after a start, and only in this operator's namespaces (another operator's
        tasks share the Redis). The GET decides: a LongTask that exists is left alone."""
        if time.monotonic() - self._started < 2 * self.sweep_seconds:
            return
        members = [wire.text(m) for m in await self.redis.zrange(names.DEADLINES, 0, -1)]
        candidates = [uid for uid in members if uid not in self.watch.unfinished]
        pipe = self.redis.pipeline(transaction=False)
        for uid in candidates:
            pipe.exists(names.done(uid))
            pipe.get(names.current(uid))
        replies = await pipe.execute()
        unfinished = {
            uid: ledger.Dispatch.model_validate_json(raw)
            for uid, done, raw in zip(candidates, replies[::2], replies[1::2], strict=True)
            if not done and raw is not None
        }
        ours = {
            uid
            for uid, current in unfinished.items()
            if scope.in_scope(self.watch.namespaces, current.namespace)
        }
        suspects, self._suspects = self._suspects, ours
        for uid in suspects & ours:
            if not reads.spend():
                return
            current = unfinished[uid]
            try:
                obj = await self.kube.get(namespace=current.namespace, name=current.name)
            except kubeerrors.NotFound:
                obj = None
            if obj is None or obj["metadata"]["uid"] != uid:
                log.warning(
                    "%s/%s: its LongTask is gone (deleted while the operator was away); cancelling it",
                    current.namespace, current.name,
                )  # fmt: skip
                await dispatch.forget(redis=self.redis, uid=uid, finished=False)
                metrics.SWEPT.labels(kind="orphan").inc()
                self._suspects.discard(uid)
