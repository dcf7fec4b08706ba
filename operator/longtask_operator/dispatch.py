"""Sends attempts to their pool's Celery queue; cancels and replays tasks. Redis only.

Sending order: the Queued event (so readers see queued before started), the Celery
message, then the marks that say it was sent (the first attempt's guard, or its removal
from the retry schedule). An operator killed before the marks sends again after its
restart; the worker's claim (keyed by uid and attempt) makes that duplicate a no-op. The
other order could lose a task. It must not touch Kubernetes: the status follows events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from opentelemetry import trace
from redis.exceptions import WatchError

from longtask_contracts import celeryconfig, events, ledger, logs, models, names, phases, tracing
from longtask_operator import metrics

log = logging.getLogger(__name__)

# Celery's hard limit comes this long after the soft one, so a task can save partial work.
HARD_LIMIT_GRACE_SECONDS = 30
# A deleted task's cancel flag outlives its other keys, so a still-running attempt stops.
_CANCEL_FLAG_TTL_SECONDS = 3600


def celery_sender(redis_url: str) -> Celery:
    """A Celery app used only to send messages, with the workers' exact settings."""
    app = Celery("longtask-operator")
    celeryconfig.configure(app, redis_url=redis_url)
    return app


def plain(body: Any) -> dict[str, Any]:
    """A deep plain-dict copy of a Kopf body (whose nested values are read-only views)."""
    result: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return result


def first_attempt(body: dict[str, Any], *, now: float) -> ledger.Dispatch:
    meta = body["metadata"]
    spec = models.LongTaskSpec.model_validate(body.get("spec") or {})
    return ledger.Dispatch(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        spec=spec,
        attempt=1,
        deadline=now + spec.timeout_seconds,
        trace=tracing.from_annotations(meta.get("annotations")),  # the gateway's create, if it was
    )


async def send(
    *,
    redis: aioredis.Redis,
    celery: Celery,
    dispatch: ledger.Dispatch,
    extra: dict[str, str] | None = None,
    replay: bool = False,
) -> None:
    """_send in a span `longtask.dispatch`, child of the task's trace (dispatch.trace); a task
    without one (made by kubectl) starts its trace here, and later attempts carry it on."""
    d = dispatch
    attributes = tracing.task_attributes(
        namespace=d.namespace, name=d.name, uid=d.uid, attempt=d.attempt, task=d.spec.task, pool=d.spec.pool
    )
    with (
        tracing.span(
            "longtask.dispatch", parent=dispatch.trace, kind=trace.SpanKind.PRODUCER, attributes=attributes
        ),
        logs.task(**d.about()),
    ):
        if not dispatch.trace:
            dispatch = dispatch.model_copy(update={"trace": tracing.inject()})
        await _send(redis=redis, celery=celery, dispatch=dispatch, extra=extra, replay=replay)
        log.info("attempt %s sent to %s", dispatch.attempt, names.queue(dispatch.spec.pool))


async def _send(
    *,
    redis: aioredis.Redis,
    celery: Celery,
    dispatch: ledger.Dispatch,
    extra: dict[str, str] | None = None,
    replay: bool = False,
) -> None:
    """Publish Queued, send the attempt, then mark it sent (`extra` keys, off the schedule).

    A crash before the last step sends the attempt again later; never zero times. A replay
    leaves the dead-letter queue in the same MULTI that queues it.
    """
    queued = dispatch.event(
        events.Kind.QUEUED,
        progress=0 if dispatch.attempt == 1 else None,
        message=f"attempt {dispatch.attempt} queued on {names.queue(dispatch.spec.pool)}",
        pool=dispatch.spec.pool,  # wakes the pool's autoscaler (autoscale.py)
    )
    pipe = redis.pipeline(transaction=True)
    ledger.queue_queued(pipe, dispatch, queued)
    if replay:
        pipe.hdel(names.DLQ, dispatch.uid)
    await pipe.execute()
    limit = int(dispatch.attempt_seconds(time.time()))
    await asyncio.to_thread(
        celery.send_task,
        names.RUN_TASK,
        args=[dispatch.model_dump(mode="json")],
        task_id=names.celery_task_id(dispatch.uid, dispatch.attempt),
        queue=names.queue(dispatch.spec.pool),
        priority=names.transport_priority(dispatch.spec.priority),
        soft_time_limit=limit,
        time_limit=limit + HARD_LIMIT_GRACE_SECONDS,
        headers={
            **tracing.inject(),
            names.QUEUED_AT_HEADER: time.time(),
        },  # trace context (W3C); queued-at for the oldest queued age
    )
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(names.SCHEDULE, dispatch.uid)
    for key, value in (extra or {}).items():
        pipe.set(key, value)
    await pipe.execute()
    metrics.DISPATCHED.labels(pool=metrics.pool_label(dispatch.spec.pool)).inc()


async def reconcile(*, redis: aioredis.Redis, celery: Celery, body: dict[str, Any]) -> None:
    """On create and on operator start: cancel if asked, else dispatch the first attempt once."""
    status = body.get("status") or {}
    if phases.is_terminal(phases.parse(status.get("phase"))):
        return
    if (body.get("spec") or {}).get("cancel"):
        await cancel(redis=redis, body=body)
        return
    uid = body["metadata"]["uid"]
    if await redis.exists(names.dispatch_guard(uid)):
        return
    dispatch = first_attempt(body, now=time.time())
    await send(redis=redis, celery=celery, dispatch=dispatch, extra={names.dispatch_guard(uid): "1"})


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
        return f"resent attempt {current.attempt} of an interrupted replay"
    dispatch = first_attempt(body, now=time.time()).model_copy(update={"attempt": started + 1})
    await redis.delete(names.done(uid), names.crashes(uid), names.cancel_flag(uid))
    await send(redis=redis, celery=celery, dispatch=dispatch, replay=True)
    return f"replayed from the dead-letter queue as attempt {dispatch.attempt}"


async def forget(*, redis: aioredis.Redis, uid: str) -> None:
    """Remove every Redis key of a LongTask that no longer exists, but keep it cancelled."""
    running = await redis.exists(names.claim(uid))
    pipe = redis.pipeline(transaction=True)
    ledger.queue_forget(pipe, uid)
    if running:
        pipe.set(names.cancel_flag(uid), "1", ex=_CANCEL_FLAG_TTL_SECONDS)
    await pipe.execute()
