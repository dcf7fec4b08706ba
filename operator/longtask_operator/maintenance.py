"""The operator's clock: dead workers, due retries, deadlines and TTLs, every tick.

Workers heartbeat the attempts they run (a lease in Redis). The operator, not the
workers, detects a lease that ran out: it runs whether or not any worker is alive, and
one scanner cannot race another. A dead attempt counts as a crash: retried with backoff,
or dead-lettered as poison after `poison_crashes` crashes in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import redis.asyncio as aioredis
from celery import Celery

from longtask_contracts import events, ledger, names, retry
from longtask_operator import dispatch, kube, metrics

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(
        self, *, redis: aioredis.Redis, celery: Celery, kube: kube.Kube, tick: float, poison_crashes: int
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.kube = kube
        self.tick = tick
        self.poison_crashes = poison_crashes

    async def run(self) -> None:
        while True:
            try:
                await self.once(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or the apiserver restarting: try again next tick
                log.exception("maintenance tick failed")
            await asyncio.sleep(self.tick)

    async def once(self, now: float) -> None:
        for uid in await self._due(names.LEASES, now):
            await self._lease_expired(uid, now)
        for uid in await self._due(names.SCHEDULE, now):
            await self._retry_due(uid)
        for uid in await self._due(names.DEADLINES, now):
            await self._deadline_passed(uid)
        for uid in await self._due(names.EXPIRY, now):
            await self._expired(uid)
        metrics.DLQ_DEPTH.set(await self.redis.hlen(names.DLQ))

    async def _due(self, zset: str, now: float) -> list[str]:
        members = await self.redis.zrangebyscore(zset, 0, now, start=0, num=500)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def _current(self, uid: str) -> ledger.Dispatch | None:
        raw = await self.redis.get(names.current(uid))
        return ledger.Dispatch.model_validate_json(raw) if raw else None

    async def _unfinished(self, uid: str, zset: str) -> ledger.Dispatch | None:
        """The task's current attempt if it still needs `zset`'s attention; else drop it."""
        current = await self._current(uid)
        if current is None or await self.redis.exists(names.done(uid)):
            await self.redis.zrem(zset, uid)
            return None
        return current

    async def _end(self, current: ledger.Dispatch, event: events.TaskEvent, *, cancel: bool = False) -> None:
        """Publish a terminal event the operator decided (raising the cancel flag first if asked)."""
        pipe = self.redis.pipeline(transaction=True)
        if cancel:
            pipe.set(names.cancel_flag(current.uid), "1")  # a running attempt stops too
        ledger.queue_publish(pipe, event, ttl=current.spec.ttl_seconds_after_finished)
        await pipe.execute()

    async def _lease_expired(self, uid: str, now: float) -> None:
        remaining = await self.redis.pttl(names.claim(uid))
        if remaining > 0:  # renewed since the scan read it: still alive
            await self.redis.zadd(names.LEASES, {uid: now + remaining / 1000})
            return
        current = await self._unfinished(uid, names.LEASES)
        if current is None:
            return
        crashes = int(await self.redis.incr(names.crashes(uid)))
        decision = retry.decide(
            policy=current.spec.retry,
            attempt=current.attempt,
            now=now,
            deadline=current.deadline,
            rand=random.random(),
            crashes=crashes,
            poison_crashes=self.poison_crashes,
        )
        error = {
            "type": "WorkerLost",
            "message": f"the worker running attempt {current.attempt} stopped heartbeating "
            f"(crash {crashes} in a row)",
        }
        _, event, dead = ledger.failure_outcome(current, decision, error, worker=None)
        log.warning("%s/%s: %s -> %s", current.namespace, current.name, error["message"], decision)
        pipe = self.redis.pipeline(transaction=True)
        ledger.queue_attempt_end(pipe, current, event, retry_at=decision.at, dead_letter=dead)
        await pipe.execute()
        metrics.WORKER_LOST.inc()

    async def _retry_due(self, uid: str) -> None:
        current = await self._unfinished(uid, names.SCHEDULE)
        if current is None:
            return
        if await self.redis.exists(names.cancel_flag(uid)):
            await self._end(
                current, current.event(events.Kind.CANCELLED, message="cancelled while waiting to retry")
            )
            return
        await dispatch.send(redis=self.redis, celery=self.celery, dispatch=current)

    async def _deadline_passed(self, uid: str) -> None:
        current = await self._unfinished(uid, names.DEADLINES)
        if current is None:
            return
        event = current.event(
            events.Kind.FAILED,
            error={
                "type": "DeadlineExceeded",
                "message": f"the task did not finish within timeoutSeconds ({current.spec.timeout_seconds})",
            },
        )
        await self._end(current, event, cancel=True)

    async def _expired(self, uid: str) -> None:
        """Delete a finished task whose TTL ran out: its Redis state first, then the object,
        so nothing of it is left once the object is gone."""
        current = await self._current(uid)
        await dispatch.forget(redis=self.redis, uid=uid)
        if current is not None:
            with contextlib.suppress(kube.Gone):
                await self.kube.delete(namespace=current.namespace, name=current.name, uid=uid)
