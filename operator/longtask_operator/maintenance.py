"""The operator's clock: dead workers, due retries, deadlines and TTLs, every tick.

Workers heartbeat the attempts they run (a lease in Redis). The operator, not the
workers, detects a lease that ran out: it runs whether or not any worker is alive, and
one scanner cannot race another. A dead attempt counts as a crash: retried with backoff,
or dead-lettered as poison after `poison_crashes` crashes in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import WatchError

from longtask_contracts import events, failures, ledger, logs, names, wire
from longtask_operator import batches, dispatch, kube, loopguard, metrics
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)
_DLQ_SWEEP_SECONDS = 300.0
_EXPIRY_RETRY_MAX_SECONDS = 300.0  # longest wait between two tries of a failed TTL deletion


class Maintenance:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        celery: Celery,
        kube: kube.Kube,
        tick: float,
        poison_crashes: int,
        claim_timeout: float = 15.0,
        listed: Callable[[], bool] = lambda: True,
        hold_leases: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.kube = kube
        self.tick = tick
        self.poison_crashes = poison_crashes
        self.claim_timeout = claim_timeout
        self.listed = listed  # the LongTask watch's LIST is done (taskwatch.TaskWatch.listed)
        # Asked first every tick: True while Redis was just found reset and its workers are
        # taking their leases back (redisrepair.RedisRepair.check): no lease expires meanwhile.
        self.hold_leases = hold_leases
        self._fetched_scanned_until = 0.0  # kombu fetch times up to this one were looked at
        self._next_dlq_sweep = 0.0
        self._sweep: asyncio.Task[None] | None = None
        self._dlq_cursor = 0
        self._expiry_failures: dict[str, int] = {}  # TTL deletions failed in a row, by uid
        self.guard = loopguard.Guard("maintenance", first_delay=tick)
        self.batches = batches.Batches(redis=redis, celery=celery, poison_crashes=poison_crashes)

    async def run(self) -> None:
        while True:
            try:
                await self.once(time.time())
                self.guard.succeeded()
                pause = self.tick
            except Exception as exc:  # the next tick, later if it keeps failing
                pause = self.guard.failed(exc)
            await asyncio.sleep(pause)

    async def once(self, now: float) -> None:
        held = self.hold_leases is not None and await self.hold_leases()
        steps: list[tuple[str, Callable[[str], Awaitable[None]]]] = [
            (names.LEASES, lambda uid: self._lease_expired(uid, now)),
            (names.SCHEDULE, self._retry_due),
            (names.DEADLINES, self._deadline_passed),
            (names.EXPIRY, self._expired),
            (names.LANE_LEASES, lambda member: self.batches.lane_lost(member, now)),
            (names.LANE_SENDS, lambda member: self.batches.send_again(member, now)),
            (names.BATCH_WAKE, lambda uid: self.batches.wake(uid, now)),
        ]
        for zset, step in steps:
            if held and zset in (names.LEASES, names.LANE_LEASES):
                continue
            for uid in await self._due(zset, now):
                await self._isolated(zset, uid, step)
        await self._fetched_never_claimed(now)
        if now >= self._next_dlq_sweep and (self._sweep is None or self._sweep.done()):
            # In the background: its apiserver reads must never delay leases and retries.
            self._next_dlq_sweep = now + _DLQ_SWEEP_SECONDS
            self._sweep = asyncio.create_task(self._sweep_dead_letters(), name="dead-letter-sweep")
        metrics.DLQ_DEPTH.set(await self.redis.hlen(names.DLQ))

    async def _sweep_dead_letters(self) -> None:
        """Forget dead-letter records whose LongTask is gone (deleted while the operator was
        down, so no DELETED event removed them): a few hundred per sweep, resuming where the
        last one stopped."""
        try:
            await self._sweep_some_dead_letters()
        except Exception as exc:
            self.guard.item_failed(exc, what="the dead-letter sweep failed; trying again at the next one")

    async def _sweep_some_dead_letters(self) -> None:
        reply: Any = await self.redis.hscan(names.DLQ, cursor=self._dlq_cursor, count=200)
        self._dlq_cursor, records = reply
        for uid, raw in records.items():
            await self._isolated(names.DLQ, wire.text(uid), functools.partial(self._forget_if_gone, raw=raw))

    async def _forget_if_gone(self, uid: str, *, raw: str | bytes) -> None:
        record = ledger.DeadLetter.model_validate_json(raw)
        try:
            obj = await self.kube.get(namespace=record.namespace, name=record.name)
        except kubeerrors.NotFound:
            obj = None
        if obj is None or obj["metadata"]["uid"] != record.uid:
            log.info("forgetting dead-lettered %s/%s: its LongTask is gone", record.namespace, record.name)
            await dispatch.forget(redis=self.redis, uid=uid)

    async def _fetched_never_claimed(self, now: float) -> None:
        """Messages fetched `claim_timeout` ago, each looked at once (a message a worker handed
        back and fetched again is looked at again): one whose attempt was never claimed lost
        its worker between fetch and claim, and is sent again (else it would wait for Redis'
        7-day visibility timeout); one whose attempt is over or superseded is dropped. A
        claimed one is left to its lease: whoever ends the attempt drops its message."""
        until = now - self.claim_timeout
        tags = await self.redis.zrangebyscore(
            names.KOMBU_UNACKED_INDEX, f"({self._fetched_scanned_until}", until
        )
        for tag in tags:
            await self._isolated(names.KOMBU_UNACKED_INDEX, wire.text(tag), self._resend_unclaimed)
        self._fetched_scanned_until = until

    async def _resend_unclaimed(self, tag: str) -> None:
        delivery = await self._delivery(tag)
        if isinstance(delivery, tuple):
            await self._lane_unclaimed(tag, *delivery)
            return
        if delivery is None:
            return  # acknowledged meanwhile, or not a longtask message
        uid, attempt = delivery.uid, delivery.attempt
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(names.done(uid))
        pipe.get(names.claim(uid))
        pipe.get(names.started(uid))
        pipe.get(names.current(uid))
        pipe.hget(names.RUNNING, uid)
        done, holder, started, current_raw, running_raw = await pipe.execute()
        running = ledger.Claim.decode(running_raw) if running_raw else None
        if holder and running is not None and running.tag == tag:
            return  # its attempt runs: its lease tells whether it lives
        current = _about(ledger.Dispatch.model_validate_json(current_raw)) if current_raw else None
        lost = not (done or holder) and int(started or 0) < attempt
        if lost and current is not None and current.attempt == attempt:
            log.warning(
                "%s/%s: attempt %s was fetched by a worker (%s) that never started it (it died?); "
                "sending it again",
                current.namespace, current.name, attempt, delivery.pod,
            )  # fmt: skip
            await dispatch.send(redis=self.redis, celery=self.celery, dispatch=current)
            metrics.RESENT_UNCLAIMED.inc()
        # Sent again, or its attempt is over, superseded or run from another copy: a worker
        # still holding this copy skips it, and its ack finds nothing.
        pipe = self.redis.pipeline(transaction=True)
        ledger.queue_drop_delivery(pipe, pool=delivery.pool, tag=tag)
        await pipe.execute()

    async def _lane_unclaimed(self, tag: str, token: tuple[str, int, int], routing_key: str) -> None:
        """A batch lane's token (uid, lane, seq) fetched `claim_timeout` ago and not claimed:
        sent again if its lane still waits for it (batches.py), and its message dropped either
        way (a claimed lane's message is dropped when the lane parks)."""
        uid, lane, seq = token
        running = await self.redis.hget(names.RUNNING, names.lane_member(uid, lane))
        claim = ledger.Claim.decode(running) if running else None
        if claim is not None and claim.tag == tag:
            return  # its lane runs: its lease tells whether it lives
        await self.batches.token_unclaimed(uid, lane, seq)
        pool = routing_key.removeprefix(names.QUEUE_PREFIX).removesuffix(names.ITEMS_QUEUE_SUFFIX)
        pipe = self.redis.pipeline(transaction=True)
        ledger.queue_drop_delivery(pipe, pool=pool, tag=tag)
        await pipe.execute()

    async def _delivery(self, tag: str) -> ledger.Delivery | tuple[tuple[str, int, int], str] | None:
        """Which attempt the fetched message `tag` holds: the worker's record of it, or (if its
        worker died before it could write one) the message's own headers; for a batch lane's
        token, its (uid, lane, seq) and routing key (workers keep no record of those)."""
        record = await self.redis.hget(names.DELIVERIES, tag)
        if record is not None:
            return ledger.Delivery.decode(record)
        raw = await self.redis.hget(names.KOMBU_UNACKED, tag)
        if raw is None:
            return None
        message, _, routing_key = json.loads(raw)
        task_id = str((message.get("headers") or {}).get("id", ""))
        if (token := names.parse_lane_task_id(task_id)) is not None:
            return token, str(routing_key)
        uid, _, attempt = task_id.rpartition(".")
        pool = str(routing_key).removeprefix(names.QUEUE_PREFIX)
        if not uid or not attempt.isdigit() or not str(routing_key).startswith(names.QUEUE_PREFIX):
            return None
        return ledger.Delivery(pool=pool, uid=uid, attempt=int(attempt), pod="?")

    async def _isolated(self, zset: str, uid: str, step: Callable[[str], Awaitable[None]]) -> None:
        """One task's step; its failure is logged and retried next tick, never the others'.

        Its log lines are about the task: the step adds what it reads of it (_about). Kombu's
        index holds delivery tags, not uids."""
        with logs.task(uid=None if zset == names.KOMBU_UNACKED_INDEX else uid):
            try:
                await step(uid)
            except Exception as exc:
                metrics.MAINTENANCE_FAILURES.inc()
                self.guard.item_failed(exc, what=f"maintenance of {uid} in {zset} failed; retrying next tick")

    async def _due(self, zset: str, now: float) -> list[str]:
        members = await self.redis.zrangebyscore(zset, 0, now, start=0, num=500)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def _current(self, uid: str) -> ledger.Dispatch | None:
        raw = await self.redis.get(names.current(uid))
        return _about(ledger.Dispatch.model_validate_json(raw)) if raw else None

    async def _unfinished(self, uid: str, zset: str) -> ledger.Dispatch | None:
        """The task's current attempt if it still needs `zset`'s attention; else drop it."""
        current = await self._current(uid)
        if current is None or await self.redis.exists(names.done(uid)):
            await self.redis.zrem(zset, uid)
            return None
        return current

    async def _end(self, current: ledger.Dispatch, event: events.TaskEvent, *, cancel: bool = False) -> None:
        """Publish a terminal event the operator decided (raising the cancel flag first if
        asked), only if the task is still unfinished at `current`'s attempt: checked and
        written in one transaction, so a worker ending the task meanwhile keeps the one
        terminal event."""
        uid = current.uid
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(names.done(uid), names.current(uid))
                    latest = ledger.current_attempt(await pipe.get(names.current(uid)))
                    if await pipe.exists(names.done(uid)) or latest != current.attempt:
                        return  # leaving the block resets the pipeline (UNWATCH)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if cancel:  # a running attempt stops too
                        pipe.set(names.cancel_flag(uid), "1", ex=ledger.KEY_TTL_SECONDS)
                    ledger.queue_publish(pipe, event, ttl=current.spec.ttl_seconds_after_finished)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def _lease_expired(self, uid: str, now: float) -> None:
        """A lease ran out: the attempt's worker died (or stalled). Record it as a crash and
        retry or dead-letter the task; the lease check, the crash count and the attempt's end
        are one transaction, so a retried tick or a worker finishing meanwhile cannot count
        a crash twice or end the attempt twice."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(
                        names.claim(uid), names.done(uid), names.current(uid), names.crashes(uid)
                    )
                    remaining = await pipe.pttl(names.claim(uid))
                    if remaining > 0:  # renewed since the scan read it: still alive
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.zadd(names.LEASES, {uid: now + remaining / 1000})
                        await pipe.execute()
                        return
                    raw = await pipe.get(names.current(uid))
                    if raw is None or await pipe.exists(names.done(uid)):
                        # Over (or forgotten): whatever still names the attempt goes, its
                        # running entry and its message included.
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.zrem(names.LEASES, uid)
                        ledger.queue_release(pipe, uid)
                        await pipe.execute()
                        return
                    current = _about(ledger.Dispatch.model_validate_json(raw))
                    crashes = int(await pipe.get(names.crashes(uid)) or 0) + 1
                    end = self._worker_lost(current, crashes, now)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(names.crashes(uid), crashes)
                    ledger.queue_attempt_end(
                        pipe, current, end.event, retry_at=end.decision.at, dead_letter=end.dead_letter
                    )
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        log.warning("%s/%s: %s -> %s", current.namespace, current.name, end.event.message, end.decision)
        metrics.LEASE_EXPIRIES.inc()

    def _worker_lost(self, current: ledger.Dispatch, crashes: int, now: float) -> failures.AttemptEnd:
        error = {
            "type": "WorkerLost",
            "message": f"the worker running attempt {current.attempt} stopped heartbeating "
            f"(crash {crashes} in a row)",
        }
        return failures.after_failure(
            dispatch=current,
            error=error,
            now=now,
            rand=random.random(),
            worker=None,
            crashes=crashes,
            poison_crashes=self.poison_crashes,
        )

    async def _retry_due(self, uid: str) -> None:
        current = await self._unfinished(uid, names.SCHEDULE)
        if current is None:
            return
        if await self.redis.exists(names.cancel_flag(uid)):
            await self._end(
                current, current.event(events.Kind.CANCELLED, message="cancelled while waiting to retry")
            )
            return
        if not self.listed():
            return  # at the next tick: a task deleted while no watch followed it is forgotten first
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
        """Delete a finished task whose TTL ran out, then forget its Redis state: only once
        the DELETE succeeded or found it gone, so a failed DELETE keeps the EXPIRY entry and
        is tried again with backoff (_expire_later) until the object is gone. Who to delete
        is recorded with the expiry (names.expiring): a task cancelled before it was ever
        sent has no `current`, and is deleted too."""
        target = await self._expiring(uid)
        if target is not None:
            namespace, name = target
            try:
                with contextlib.suppress(kubeerrors.NotFound):  # also: replaced by a namesake
                    await self.kube.delete(namespace=namespace, name=name, uid=uid)
            except Exception:
                await self._expire_later(uid)
                raise  # logged and counted as a failed step (_isolated)
        self._expiry_failures.pop(uid, None)
        await dispatch.forget(redis=self.redis, uid=uid)

    async def _expiring(self, uid: str) -> tuple[str, str] | None:
        """(namespace, name) of the task to delete at its TTL."""
        raw = await self.redis.get(names.expiring(uid))
        if raw:
            namespace, _, name = wire.text(raw).partition("/")
            return namespace, name
        current = await self._current(uid)  # expiries recorded before names.expiring existed
        return (current.namespace, current.name) if current is not None else None

    async def _expire_later(self, uid: str) -> None:
        """Try a failed TTL deletion again later: tick, 2 ticks, 4 ... up to 5 minutes apart."""
        failures = self._expiry_failures[uid] = self._expiry_failures.get(uid, 0) + 1
        delay = min(_EXPIRY_RETRY_MAX_SECONDS, self.tick * 2**failures)
        await self.redis.zadd(names.EXPIRY, {uid: time.time() + delay}, xx=True)


def _about(current: ledger.Dispatch) -> ledger.Dispatch:
    """From here on, log lines of this step are about `current` (and its trace)."""
    logs.update(**current.about())
    return current
