"""Dispatches, cancels, replays and forgets LongTasks. Redis and Celery only.

Sending itself (order, guard, span) is longtask_runtime.sending, shared with the
gateway. It must not touch Kubernetes: the status follows events.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import WatchError

from longtask_contracts import events, ledger, models, names, phases, poolaccess
from longtask_operator import batches, metrics
from longtask_runtime import sending

log = logging.getLogger(__name__)

# A deleted task's cancel flag outlives its other keys, so a still-running attempt stops.
_CANCEL_FLAG_TTL_SECONDS = 3600


def plain(body: Any) -> dict[str, Any]:
    """A deep plain-dict copy of a Kopf body (whose nested values are read-only views)."""
    result: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return result


async def send(
    *, redis: aioredis.Redis, celery: Celery, dispatch: ledger.Dispatch, replay: bool = False
) -> bool:
    """Send one attempt (sending.send) and count it; False if its LongTask was deleted
    (forgotten) meanwhile, and nothing was sent."""
    if not await sending.send(redis=redis, celery=celery, dispatch=dispatch, replay=replay):
        return False
    metrics.DISPATCHED.labels(pool=metrics.pool_label(dispatch.spec.pool)).inc()
    return True


class Refused(Exception):
    """The task's pool does not admit its namespace; this call failed it (PoolNotAllowed)."""

    def __init__(self, verdict: poolaccess.Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


async def reconcile(
    *,
    redis: aioredis.Redis,
    celery: Celery,
    body: dict[str, Any],
    pools: poolaccess.Claims,
    verdict: poolaccess.Verdict,
) -> bool:
    """Cancel if asked, else dispatch the first attempt once; whether it is settled (this
    call sent it, or a sender had). `verdict` says whether its pool admits its namespace
    (the caller confirmed a refusal: taskwatch.reconcile); a task refused is failed
    instead, once: this call raises Refused when it was the one to fail it (the caller
    posts the Event). Not decidable yet (pools not listed, namespace labels not seen, the
    watches behind): nothing happens, False, and the sweep looks again."""
    status = body.get("status") or {}
    if phases.is_terminal(phases.parse(status.get("phase"))):
        return False
    if (body.get("spec") or {}).get("cancel"):
        await cancel(redis=redis, body=body)
        return False
    if verdict.outcome is poolaccess.Outcome.UNKNOWN:
        log.info("not sending yet: %s", verdict.message)
        return False
    if verdict.outcome is poolaccess.Outcome.REFUSED:
        if await refuse(redis=redis, body=body, verdict=verdict):
            raise Refused(verdict)
        return True
    if sent := await sending.send_first(redis=redis, celery=celery, body=body, pools=pools):
        metrics.DISPATCHED.labels(pool=metrics.pool_label(sent.spec.pool)).inc()
        return True
    return False


async def refuse(*, redis: aioredis.Redis, body: dict[str, Any], verdict: poolaccess.Verdict) -> bool:
    """Fail a task its pool does not admit, without sending it (fail_unsent, PoolNotAllowed)."""
    return await fail_unsent(
        redis=redis, body=body, error={"type": "PoolNotAllowed", "message": verdict.message}
    )


async def fail_unsent(*, redis: aioredis.Redis, body: dict[str, Any], error: dict[str, str]) -> bool:
    """Fail a task without sending it (its pool refuses it, or its spec is one the schema
    let through and the task cannot run, e.g. an item over the size limit): the first
    attempt's guard is taken as "refused" (SET NX, so a sender that took it first wins, and
    no sender ever takes it afterwards), then a Failed event with `error` is published, in
    one MULTI. Whether this call failed it."""
    meta = body["metadata"]
    uid = meta["uid"]
    ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
    if not await redis.set(names.dispatch_guard(uid), sending.SENDING, nx=True, ex=sending.SENDING_SECONDS):
        return False
    event = events.TaskEvent(
        kind=events.Kind.FAILED,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=uid,
        message=error["message"],
        error=error,
    )
    pipe = redis.pipeline(transaction=True)
    ledger.queue_publish(pipe, event, ttl=ttl if isinstance(ttl, int) else None)
    pipe.set(names.dispatch_guard(uid), sending.REFUSED, ex=ledger.KEY_TTL_SECONDS)
    await pipe.execute()
    log.warning("%s/%s failed without being sent: %s", meta["namespace"], meta["name"], error["message"])
    return True


async def cancel(
    *, redis: aioredis.Redis, body: dict[str, Any], reason: str = "cancelled on request"
) -> None:
    """Raise the cancel flag; a task that is not running ends Cancelled at once.

    A running attempt sees the flag (ctx.cancelled) and stops cooperatively; its worker
    stops it forcibly after the grace period. The flag lives in Redis with AOF on, and is
    raised again from spec.cancel whenever the operator starts, so it survives restarts.
    """
    meta, status = body["metadata"], body.get("status") or {}
    uid = meta["uid"]
    # It expires: spec.cancel (in etcd) raises it again whenever the operator starts.
    await redis.set(names.cancel_flag(uid), "1", ex=ledger.KEY_TTL_SECONDS)
    if phases.is_terminal(phases.parse(status.get("phase"))):
        return
    spec = models.LongTaskSpec.model_validate(body.get("spec") or {})
    if spec.is_batch and await batches.cancel(redis, uid):
        return  # a started batch ends Cancelled once none of its items is held
    event = events.TaskEvent(
        kind=events.Kind.CANCELLED,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=uid,
        attempt=int(status.get("attempts") or 0),
        message=reason,
    )
    # Report Cancelled only if no worker holds or finished the task, checked and written
    # atomically (WATCH): otherwise the worker reports it, and one report is all we want.
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(names.done(uid), names.claim(uid))
                if await pipe.exists(names.done(uid), names.claim(uid)):
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                ledger.queue_publish(pipe, event, ttl=spec.ttl_seconds_after_finished)
                await pipe.execute()
                return
            except WatchError:
                continue  # a worker claimed or finished it meanwhile: look again


async def replay(*, redis: aioredis.Redis, celery: Celery, body: dict[str, Any]) -> str:
    """Replay a dead-lettered task as its next attempt; returns what happened, for an Event.

    Run again after an operator crash, it finishes an interrupted replay: a current attempt
    that is queued but never started (and not done) is sent again; the worker's claim makes
    a second copy harmless.
    """
    uid = body["metadata"]["uid"]
    started = int(await redis.get(names.started(uid)) or 0)
    if not await redis.hexists(names.DLQ, uid):
        raw = await redis.get(names.current(uid))
        current = ledger.Dispatch.model_validate_json(raw) if raw else None
        if current is None or current.attempt <= started or await redis.exists(names.done(uid)):
            return "not in the dead-letter queue; nothing to replay"
        await send(redis=redis, celery=celery, dispatch=current)
        if current.items and await redis.hget(names.batch(uid), "ended"):
            await batches.reset_failed(redis, uid)  # the replay stopped before it: idempotent
        return f"resent attempt {current.attempt} of an interrupted replay"
    previous = ledger.current_attempt(await redis.get(names.current(uid))) or 0
    dispatch = sending.first_attempt(body, now=time.time())
    dispatch = dispatch.model_copy(update={"attempt": max(started, previous) + 1})
    if dispatch.items and not await redis.exists(names.batch(uid)):
        return "the batch's items are gone from Redis; nothing to replay"
    await redis.delete(names.done(uid), names.crashes(uid), names.cancel_flag(uid))
    await send(redis=redis, celery=celery, dispatch=dispatch, replay=True)
    if dispatch.items:  # after the new attempt is current: its lanes run under it
        await batches.reset_failed(redis, uid)
        return f"replayed the batch's failed items from the dead-letter queue (run {dispatch.attempt})"
    return f"replayed from the dead-letter queue as attempt {dispatch.attempt}"


async def forget(*, redis: aioredis.Redis, uid: str, finished: bool | None = None) -> None:
    """Remove every Redis key of a LongTask that no longer exists, but keep it cancelled.

    An unfinished task keeps a tombstone (ledger.queue_forget), which refuses every later
    send and claim; a worker running an attempt of it reads the tombstone as a cancel
    request (the cancel flag is raised too, for workers of earlier versions). A finished
    task leaves nothing (no sender acts on it again). `finished`: what the caller knows of
    it (a DELETED event's phase); None: finished if Redis says it is done."""
    await batches.forget(redis, uid)
    look = redis.pipeline(transaction=False)
    look.exists(names.claim(uid))
    look.exists(names.done(uid))
    look.hget(names.batch(uid), "lanes")
    running, done, lanes = await look.execute()
    running = running or int(lanes or 0) > 0
    pipe = redis.pipeline(transaction=True)
    ledger.queue_forget(pipe, uid, tombstone=not (done if finished is None else finished))
    if running:
        pipe.set(names.cancel_flag(uid), "1", ex=_CANCEL_FLAG_TTL_SECONDS)
    await pipe.execute()
