"""Sends an attempt to its pool's Celery queue, and the first attempt of a LongTask once.

Shared by the operator (every attempt) and the gateway (the first attempt of a LongTask it
just created, without waiting for the operator's watch). Redis and Celery only: it must
not touch Kubernetes.

Sending order: the Queued event (so readers see queued before started), the Celery
message, then the marks that say it was sent (the first attempt's guard, or its removal
from the retry schedule). A sender killed before the marks sends again later; the
worker's claim (keyed by uid and attempt) makes that duplicate a no-op. The other order
could lose a task.

The first attempt's guard (names.dispatch_guard) is taken with SET NX before anything is
sent, so of two senders racing (the gateway and the operator) one sends and the other
steps aside. It holds "sending" for SENDING_SECONDS, then "sent": a sender that died in
between leaves a guard that runs out, and the operator's sweep sends the task then. The
operator sets it to "refused" for a task whose pool does not admit its namespace.

Neither sender sends a first attempt unless the pool admits the task's namespace
(poolaccess: the verdict of the caller's Claims is ALLOWED); what is refused or not yet
decidable is left to the operator (longtask_operator.dispatch), which fails it.

A batch (spec.items or spec.itemsFrom) is sent the same way, but its "message" is its lanes
(batch.py): the Queued event, the current attempt and the batch's start (batchledger op start:
its inputs, counters and lanes, each lane queued and due to be sent again in
batchledger.SEND_AGAIN_SECONDS) are one MULTI; then each lane's token goes to the pool's items
queue, and each sent lane is marked sent (off names.LANE_SENDS). A sender killed in between
leaves lanes the operator sends again (maintenance.py); a token sent twice is claimed once.

A send of a deleted task sends nothing: the Queued event and the current attempt are
written only if the task has no tombstone (names.tombstone, left when the operator forgets
a task), checked in the same transaction (WATCH), and only then is the message sent. A
forget that comes after that write deletes the current attempt, and the worker's claim
refuses a task without one (or with a tombstone), so a message already on its way never
starts either.
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

from longtask_contracts import batchledger, events, ledger, logs, models, names, poolaccess, tracing
from longtask_runtime import celeryconfig, redisconn

log = logging.getLogger(__name__)

# Celery's hard limit comes this long after the soft one, so a task can save partial work.
HARD_LIMIT_GRACE_SECONDS = 30
# How long a first send may take before another sender may take over (see the module doc).
SENDING_SECONDS = 30
SENDING, SENT, REFUSED = "sending", "sent", "refused"


def celery_sender(redis_url: redisconn.Target | str) -> Celery:
    """A Celery app used only to send messages, with the workers' exact settings (and broker:
    a URL, or a redisconn.Target that may name Sentinels)."""
    app = Celery("longtask-sender")
    celeryconfig.configure(app, redis_url=redis_url)
    return app


# The longest a batch may run: its deadline (names.DEADLINES) is the time all its waves of
# items could take if each took its whole timeoutSeconds, but never more than this.
BATCH_DEADLINE_MAX_SECONDS = 365 * 24 * 3600


def first_attempt(body: dict[str, Any], *, now: float) -> ledger.Dispatch:
    """Attempt 1 of the LongTask `body` (a plain dict as the apiserver returns it). A batch's
    spec travels without its inline items (the batch's start stores them in Redis)."""
    meta = body["metadata"]
    spec = models.LongTaskSpec.model_validate(body.get("spec") or {})
    return ledger.Dispatch(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        spec=spec.without_items(),
        attempt=1,
        deadline=now + deadline_seconds(spec),
        items=spec.item_count,
        trace=tracing.from_annotations(meta.get("annotations")),  # the gateway's create, if it was
    )


def deadline_seconds(spec: models.LongTaskSpec) -> float:
    """How long the task may take: timeoutSeconds; a batch, timeoutSeconds per wave of items
    (items / parallelism waves), at most BATCH_DEADLINE_MAX_SECONDS."""
    if not spec.is_batch:
        return float(spec.timeout_seconds)
    waves = -(-spec.item_count // spec.lanes())
    return float(min(spec.timeout_seconds * waves, BATCH_DEADLINE_MAX_SECONDS))


async def send_first(
    *, redis: aioredis.Redis, celery: Celery, body: dict[str, Any], pools: poolaccess.Claims
) -> ledger.Dispatch | None:
    """Send attempt 1 of `body` unless someone sent it or is sending it, or its pool does
    not admit its namespace by `pools` (refused, or not known yet); what this call sent."""
    if not admitted(body, pools=pools).allowed:
        return None
    uid = body["metadata"]["uid"]
    guard = names.dispatch_guard(uid)
    if not await redis.set(guard, SENDING, nx=True, ex=SENDING_SECONDS):
        return None
    dispatch = first_attempt(body, now=time.time())
    items = (body.get("spec") or {}).get("items")
    if not await send(redis=redis, celery=celery, dispatch=dispatch, extra={guard: SENT}, items=items):
        return None
    return dispatch


def admitted(body: dict[str, Any], *, pools: poolaccess.Claims) -> poolaccess.Verdict:
    """Whether the LongTask `body` may run on its pool (poolaccess)."""
    spec = models.LongTaskSpec.model_validate(body.get("spec") or {})
    return pools.verdict(namespace=body["metadata"]["namespace"], pool=spec.pool)


async def send(
    *,
    redis: aioredis.Redis,
    celery: Celery,
    dispatch: ledger.Dispatch,
    extra: dict[str, str] | None = None,
    replay: bool = False,
    items: list[dict[str, Any]] | None = None,
) -> bool:
    """Publish Queued, send the attempt, then mark it sent (`extra` keys, off the schedule),
    in a span `longtask.dispatch`, child of the task's trace (dispatch.trace); a task without
    one (made by kubectl) starts its trace here, and later attempts carry it on.

    A crash before the last step sends the attempt again later; never zero times. A replay
    leaves the dead-letter queue in the same MULTI that queues it. Returns False, having
    sent nothing, if the task was forgotten (its LongTask is gone). A batch (dispatch.items)
    starts with the same MULTI (its inline `items` stored in it) and sends its lanes.
    """
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
        started = await _publish_queued(redis, dispatch, replay=replay, items=items)
        if started is None:
            log.info("attempt %s not sent: the LongTask was deleted", dispatch.attempt)
            return False
        if dispatch.items:
            await send_lanes(redis=redis, celery=celery, dispatch=dispatch, lanes=started)
            await _mark_sent(redis, dispatch, extra=extra or {})
            log.info("batch of %s items: %s lanes sent", dispatch.items, len(started))
            return True
        await asyncio.to_thread(_send_message, celery, dispatch)
        await _mark_sent(redis, dispatch, extra=extra or {})
        log.info("attempt %s sent to %s", dispatch.attempt, names.queue(dispatch.spec.pool))
        return True


async def send_lanes(
    *, redis: aioredis.Redis, celery: Celery, dispatch: ledger.Dispatch, lanes: list[tuple[int, int]]
) -> None:
    """Send each (lane, seq) token of the batch, then mark them sent (off names.LANE_SENDS)."""
    if not lanes:
        return
    await asyncio.to_thread(send_tokens, celery, dispatch, lanes)
    await redis.zrem(names.LANE_SENDS, *(names.lane_member(dispatch.uid, lane) for lane, _ in lanes))


def send_tokens(celery: Celery, dispatch: ledger.Dispatch, lanes: list[tuple[int, int]]) -> None:
    """The Celery messages of the batch's (lane, seq) tokens (blocking: a worker's lane sends
    its next token with it too). No time limit: each item has its own (worker lanes.py)."""
    body = dispatch.model_dump(mode="json")
    headers = {**tracing.inject(), names.QUEUED_AT_HEADER: time.time()}
    with celery.producer_or_acquire() as producer:
        for lane, seq in lanes:
            celery.send_task(
                names.RUN_ITEMS,
                args=[body, lane, seq],
                task_id=names.lane_task_id(dispatch.uid, lane, seq),
                queue=names.items_queue(dispatch.spec.pool),
                priority=names.transport_priority(dispatch.spec.priority),
                headers=headers,
                producer=producer,
            )


async def _publish_queued(
    redis: aioredis.Redis, dispatch: ledger.Dispatch, *, replay: bool, items: list[dict[str, Any]] | None
) -> list[tuple[int, int]] | None:
    """The Queued event and the attempt's ledger, in one MULTI (a replay also leaves the DLQ;
    a batch starts in it: _queue_start), unless the task has a tombstone: checked in the same
    transaction (WATCH), so a forget either comes first and this writes nothing (None), or
    comes after and removes it all. A batch's lanes to send, else []."""
    queued = dispatch.event(
        events.Kind.QUEUED,
        progress=0 if dispatch.attempt == 1 else None,
        message=f"attempt {dispatch.attempt} queued on {names.queue(dispatch.spec.pool)}"
        if not dispatch.items
        else f"batch of {dispatch.items} items queued on {names.items_queue(dispatch.spec.pool)}",
        pool=dispatch.spec.pool,  # wakes the pool's autoscaler (autoscale.py)
        items={"total": dispatch.items, "queued": dispatch.items}
        if dispatch.items and dispatch.attempt == 1
        else None,
    )
    tombstone = names.tombstone(dispatch.uid)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(tombstone)
                if await pipe.exists(tombstone):
                    return None  # leaving the block resets the pipeline (UNWATCH)
                pipe.multi()  # type: ignore[no-untyped-call]
                now = time.time()
                ledger.queue_queued(pipe, dispatch, queued, now=now)
                if replay:
                    pipe.hdel(names.DLQ, dispatch.uid)
                if dispatch.items:
                    _queue_start(pipe, dispatch, items=items, now=now)
                replies = await pipe.execute()
                if not dispatch.items:
                    return []
                reply = replies[-1]
                if int(reply[0]) != 1:
                    await _items_missing(redis, dispatch)
                    return []
                return batchledger.lanes_to_send(reply, 1)
            except WatchError:
                continue  # forgotten meanwhile: look again


def _queue_start(
    pipe: Any, dispatch: ledger.Dispatch, *, items: list[dict[str, Any]] | None, now: float
) -> None:
    """The batch's start (batchledger op start), its inline items first."""
    spec, uid = dispatch.spec, dispatch.uid
    if items:
        inputs = {str(i): json.dumps(item, separators=(",", ":")) for i, item in enumerate(items)}
        pipe.hset(names.items_inputs(uid), mapping=inputs)
    upload = spec.items_from.upload if spec.items_from is not None else ""
    lanes = spec.lanes(dispatch.items)
    keys = batchledger.keys(uid, pool=spec.pool, priority=spec.priority, upload=upload)
    args = batchledger.args(
        uid,
        "start",
        now,
        dispatch.items,
        lanes,
        -1 if spec.max_failed_items is None else spec.max_failed_items,
        spec.pool,
        lanes,
        1 if upload else 0,
        ledger.current_seconds(dispatch, now=now),
    )
    pipe.eval(batchledger.SCRIPT, len(keys), *keys, *args)


async def _items_missing(redis: aioredis.Redis, dispatch: ledger.Dispatch) -> None:
    """A batch whose items the gateway stored are gone (expired before it started): it fails."""
    message = "the batch's items (spec.itemsFrom) are not in Redis: they expired or were never stored"
    event = dispatch.event(events.Kind.FAILED, error={"type": "ItemsMissing", "message": message})
    pipe = redis.pipeline(transaction=True)
    ledger.queue_publish(pipe, event, ttl=dispatch.spec.ttl_seconds_after_finished)
    await pipe.execute()


def _send_message(celery: Celery, dispatch: ledger.Dispatch) -> None:
    """The Celery message (blocking: called in a thread), with the attempt's time limits."""
    limit = int(dispatch.attempt_seconds(time.time()))
    celery.send_task(
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


async def _mark_sent(redis: aioredis.Redis, dispatch: ledger.Dispatch, *, extra: dict[str, str]) -> None:
    """Off the retry schedule, and the `extra` marks (the first attempt's guard: sent)."""
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(names.SCHEDULE, dispatch.uid)
    for key, value in extra.items():
        # Expires like the task's other keys, also when the task finished before this mark.
        pipe.set(key, value, ex=ledger.KEY_TTL_SECONDS)
    await pipe.execute()
