"""The operator's part in running batches (contracts batch.py): lanes whose lease ran out,
lanes to send (again), idle lanes to wake, and a batch's end, cancel, replay and forget.

Every change to a batch's state is a call of batchledger.SCRIPT (atomic, and refused for a
lane that moved on), so a tick run twice, or a worker reporting meanwhile, changes nothing
twice. The batch's terminal event is published here only (once its script said it ended),
checked against the task's `done` mark and current attempt in one transaction. Redis and
Celery only: it must not touch Kubernetes (the status follows the events).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import WatchError

from longtask_contracts import batch, batchledger, events, ledger, names, retry, wire
from longtask_runtime import sending

log = logging.getLogger(__name__)
FAILED_INDEXES_READ = 10_000  # failed indexes read for an end's failedIndexes (the rest: "...")


class Batches:
    def __init__(self, *, redis: aioredis.Redis, celery: Celery, poison_crashes: int) -> None:
        self.redis = redis
        self.celery = celery
        self.poison_crashes = poison_crashes

    # -- maintenance steps (one member of a zset each) ----------------------------------
    async def lane_lost(self, member: str, now: float) -> None:
        """A lane's lease ran out (names.LANE_LEASES): its worker died or stalled. Its items are
        ended as a crash (batchledger op lost, then report and park as the lane), and the lane
        is queued again with a new token."""
        uid, lane = _split(member)
        current = await _current(self.redis, uid)
        if current is None:
            await self.redis.zrem(names.LANE_LEASES, member)
            return
        reply = await _call(self.redis, current, "lost", lane, now=now)
        if int(reply[0]) != 1:
            return  # renewed since the scan, or not running any more
        seq, pod = int(reply[1]), wire.text(reply[2])
        held = [(int(reply[i]), wire.text(reply[i + 1])) for i in range(3, len(reply), 2)]
        outcomes = self._crashed(current, held, now)
        spec = current.spec
        keys = batchledger.keys(uid, pool=spec.pool, priority=spec.priority)
        report = batchledger.report_args(
            uid, lane=lane, seq=seq, expect="x", now=now, lease_end=0, outcomes=outcomes
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.eval(batchledger.SCRIPT, len(keys), *keys, *report)
        pipe.eval(
            batchledger.SCRIPT, len(keys), *keys, *batchledger.args(uid, "park", now, lane, seq, "x", "again")
        )
        _, parked = await pipe.execute()
        log.warning(
            "%s/%s: lane %s lost its worker (%s) holding %s items; they return to the queue",
            current.namespace, current.name, lane, pod, len(held),
        )  # fmt: skip
        if int(parked[0]) == 1 and wire.text(parked[2]) == batch.LaneState.QUEUED:
            await sending.send_lanes(
                redis=self.redis, celery=self.celery, dispatch=current, lanes=[(lane, int(parked[1]))]
            )

    def _crashed(
        self, current: ledger.Dispatch, held: list[tuple[int, str]], now: float
    ) -> list[batchledger.Outcome]:
        """The outcomes of a lost lane's items. An item that ran alone (the lane held nothing
        else) had its attempt cut short by the crash: it counts, and may retry, or fail as
        poison after `poison_crashes` crashes in a row. Items of a chunk go back to the queue
        with the crash noted: each then runs alone, so a crash tells which item it was."""
        out = []
        for index, raw in held:
            record = batch.ItemRecord.model_validate_json(raw) if raw else batch.ItemRecord(index=index)
            record = record.model_copy(update={"crashes": record.crashes + 1})
            if len(held) > 1:
                out.append(batchledger.Outcome(index=index, code="q", record=record))
                continue
            attempt = record.attempts + 1
            started = record.started_at or now
            error = {"type": "WorkerLost", "message": f"the worker running the item stopped heartbeating "
                     f"(crash {record.crashes} in a row)"}  # fmt: skip
            decision = retry.decide(
                policy=current.spec.retry,
                attempt=attempt,
                now=now,
                deadline=started + current.spec.timeout_seconds,
                rand=random.random(),
                crashes=record.crashes,
                poison_crashes=self.poison_crashes,
            )
            record = record.model_copy(update={"attempts": attempt, "started_at": started, "error": error})
            if decision.outcome is retry.Outcome.RETRY and decision.at is not None:
                update = {"phase": batch.ItemPhase.RETRYING, "next_attempt_at": decision.at}
                out.append(
                    batchledger.Outcome(
                        index=index, code="r", record=record.model_copy(update=update), due=decision.at
                    )
                )
            else:
                if decision.reason == "Poison":
                    error = {**error, "type": "Poison", "message": f"{error['message']}: the item is poison"}
                update = {"phase": batch.ItemPhase.FAILED, "finished_at": now, "error": error}
                out.append(
                    batchledger.Outcome(index=index, code="f", record=record.model_copy(update=update))
                )
        return out

    async def send_again(self, member: str, now: float) -> None:
        """A lane queued SEND_AGAIN_SECONDS ago whose token was never marked sent (its sender
        died in between): sent again, with the same seq (one copy is claimed, the other refused)."""
        uid, lane = _split(member)
        current = await _current(self.redis, uid)
        raw = await self.redis.hget(names.lanes(uid), str(lane))
        if current is None or raw is None:
            await self.redis.zrem(names.LANE_SENDS, member)
            return
        seq = batch.Lane.decode(raw).seq
        if int((await _call(self.redis, current, "sendagain", lane, seq, now=now))[0]) == 1:
            log.warning("%s/%s: lane %s was never sent; sending it", current.namespace, current.name, lane)
            await sending.send_lanes(
                redis=self.redis, celery=self.celery, dispatch=current, lanes=[(lane, seq)]
            )

    async def token_unclaimed(self, uid: str, lane: int, seq: int) -> None:
        """A lane token fetched long ago was never claimed (its worker died before): if the lane
        still waits for that token, it is sent again."""
        current = await _current(self.redis, uid)
        if current is not None and int((await _call(self.redis, current, "sendagain", lane, seq))[0]) == 1:
            log.warning(
                "%s/%s: lane %s was fetched and never run; sending it again",
                current.namespace,
                current.name,
                lane,
            )
            await sending.send_lanes(
                redis=self.redis, celery=self.celery, dispatch=current, lanes=[(lane, seq)]
            )

    async def wake(self, uid: str, now: float) -> None:
        """names.BATCH_WAKE: idle lanes with items ready go again; an ended batch is reported."""
        current = await _current(self.redis, uid)
        if current is None:
            await self.redis.zrem(names.BATCH_WAKE, uid)
            return
        reply = await _call(self.redis, current, "wake", now=now)
        if int(reply[0]) == 2:
            await end(self.redis, current, phase=wire.text(reply[1]))
            await self.redis.zrem(names.BATCH_WAKE, uid)
            return
        lanes = batchledger.lanes_to_send(reply, 2)
        await sending.send_lanes(redis=self.redis, celery=self.celery, dispatch=current, lanes=lanes)


# -- the end, and requests ---------------------------------------------------------------
async def end(redis: aioredis.Redis, current: ledger.Dispatch, *, phase: str) -> bool:
    """Publish the batch's terminal event (with its final counts and failedIndexes, and its
    dead-letter record if it failed), unless the task ended already or moved to another
    attempt: checked and written in one transaction. Whether this call published it."""
    uid = current.uid
    look = redis.pipeline(transaction=False)
    look.hgetall(names.batch(uid))
    look.zcard(names.items_retry(uid))
    look.zrange(names.items_failed(uid), 0, FAILED_INDEXES_READ - 1)
    look.zcard(names.items_failed(uid))
    raw, retrying, failed, failed_count = await look.execute()
    event, dead = _end_event(current, phase, batch.counts(raw, retrying), failed, failed_count, raw)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(names.done(uid), names.current(uid))
                latest = ledger.current_attempt(await pipe.get(names.current(uid)))
                if await pipe.exists(names.done(uid)) or latest != current.attempt:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                ledger.queue_publish(pipe, event, ttl=current.spec.ttl_seconds_after_finished)
                if dead is not None:
                    ledger.queue_dead_letter(pipe, dead)
                await pipe.execute()
                break
            except WatchError:
                continue
    log.info("%s/%s: batch ended %s (%s)", current.namespace, current.name, phase, event.message)
    return True


def _end_event(
    current: ledger.Dispatch,
    phase: str,
    counts: batch.Counts,
    failed: list[Any],
    failed_count: int,
    raw: dict[Any, Any],
) -> tuple[events.TaskEvent, ledger.DeadLetter | None]:
    indexes = sorted(int(wire.text(i)) for i in failed)
    failed_text = batch.bounded_indexes(indexes, more=max(0, failed_count - len(indexes)))
    items = {**counts.model_dump(), "failedIndexes": failed_text}
    summary = f"{counts.succeeded} of {counts.total} items succeeded"
    if phase == "Succeeded":
        result = {"items": counts.total, "succeeded": counts.succeeded}
        event = current.event(
            events.Kind.SUCCEEDED, progress=100, items=items, result=result, message=summary
        )
        return event, None
    if phase == "Cancelled":
        message = f"cancelled: {summary}, {counts.cancelled} never ran"
        return current.event(
            events.Kind.CANCELLED, progress=counts.progress(), items=items, message=message
        ), None
    stopped = wire.text(raw.get(b"stop", raw.get("stop", b""))) == "Failed"
    limit = current.spec.max_failed_items
    if stopped:
        error = {
            "type": "MaxFailedItemsExceeded",
            "message": f"{counts.failed} items failed, more than maxFailedItems ({limit}); "
            f"{counts.cancelled} were cancelled (failed indexes {failed_text})",
        }
    else:
        error = {
            "type": "ItemsFailed",
            "message": f"{counts.failed} of {counts.total} items failed (indexes {failed_text})",
        }
    dead = ledger.DeadLetter(
        namespace=current.namespace,
        name=current.name,
        uid=current.uid,
        task=current.spec.task,
        spec=current.spec.to_k8s(),
        attempts=current.attempt,
        reason="ItemsFailed",
        error=error,
    )
    event = current.event(
        events.Kind.FAILED, progress=counts.progress(), items=items, error=error, dead_lettered=True
    )
    return event, dead


async def cancel(redis: aioredis.Redis, uid: str) -> bool:
    """Stop the batch (its queued items never start; the cancel flag stops running ones);
    end it Cancelled now if no item is held. False if it never started (no batch)."""
    current = await _current(redis, uid)
    if current is None:
        return False
    reply = await _call(redis, current, "cancel", "Cancelled", ledger.KEY_TTL_SECONDS)
    if int(reply[0]) != 1:
        return False
    if wire.text(reply[1]):
        await end(redis, current, phase=wire.text(reply[1]))
    return True


async def reset_failed(redis: aioredis.Redis, uid: str) -> bool:
    """For a replay: the failed items (and those a stop left) queued again with fresh records
    (attempts and deadline start over). False if there is no batch."""
    current = await _current(redis, uid)
    if current is None:
        return False
    indexes = [wire.text(i) for i in await redis.zrange(names.items_failed(uid), 0, -1)]
    flat: list[Any] = []
    for index in indexes:
        flat += [index, batch.ItemRecord(index=int(index)).encode()]
    return int((await _call(redis, current, "replay", *flat))[0]) == 1


async def forget(redis: aioredis.Redis, uid: str) -> None:
    """Drop what a batch keeps outside its own keys: its lanes' leases, sends and running
    entries, its pool's queued count, its wake-up (its own keys go with the task's)."""
    look = redis.pipeline(transaction=False)
    look.hget(names.batch(uid), batch.Key.POOL)
    look.hkeys(names.lanes(uid))
    pool, lanes = await look.execute()
    if pool is None and not lanes:
        return
    pipe = redis.pipeline(transaction=True)
    members = [names.lane_member(uid, int(wire.text(lane))) for lane in lanes]
    if members:
        pipe.zrem(names.LANE_LEASES, *members)
        pipe.zrem(names.LANE_SENDS, *members)
    for member in members:
        ledger.queue_release(pipe, member)
    if pool is not None:
        pipe.hdel(names.pool_items(wire.text(pool)), uid)
    pipe.zrem(names.BATCH_WAKE, uid)
    await pipe.execute()


async def _current(redis: aioredis.Redis, uid: str) -> ledger.Dispatch | None:
    raw = await redis.get(names.current(uid))
    return ledger.Dispatch.model_validate_json(raw) if raw else None


async def _call(
    redis: aioredis.Redis, current: ledger.Dispatch, op: str, *rest: Any, now: float | None = None
) -> Any:
    spec = current.spec
    keys = batchledger.keys(current.uid, pool=spec.pool, priority=spec.priority)
    return await redis.eval(
        batchledger.SCRIPT, len(keys), *keys, *batchledger.args(current.uid, op, now or time.time(), *rest)
    )


def _split(member: str) -> tuple[str, int]:
    uid, _, lane = member.rpartition("/")
    return uid, int(lane)
