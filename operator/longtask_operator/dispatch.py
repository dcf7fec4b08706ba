"""Sends a LongTask's attempt to its pool's Celery queue, at most once per attempt.

Order matters: the Queued event and the Celery message are sent first, the guard key
(keyed by the CR uid) is set after. An operator killed in between sends again on
restart; the worker's lease and done keys make that duplicate a no-op. The other order
could lose the task. It must not touch Kubernetes: the status follows from the event.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from longtask_contracts import events, models, names, phases
from longtask_operator import metrics
from longtask_worker import app as worker_app
from longtask_worker import settings as worker_settings

# Celery's per-attempt hard limit is the task deadline plus this; the soft limit (a signal
# the task can handle to save partial work) is the deadline itself.
_HARD_LIMIT_GRACE_SECONDS = 30


def celery_sender(redis_url: str) -> Celery:
    """A Celery app used only to send messages, with the workers' exact settings."""
    app = Celery("longtask-operator")
    worker_app.configure(app, worker_settings.WorkerSettings(REDIS_URL=redis_url))  # type: ignore[call-arg]
    return app


def build(
    *, namespace: str, name: str, uid: str, spec: models.LongTaskSpec, attempt: int, now: float
) -> events.Dispatch:
    return events.Dispatch(
        namespace=namespace,
        name=name,
        uid=uid,
        task=spec.task,
        params=spec.params,
        attempt=attempt,
        timeout_seconds=spec.timeout_seconds,
        deadline=now + spec.timeout_seconds,
    )


async def dispatch(*, redis: aioredis.Redis, celery: Celery, body: dict[str, Any]) -> bool:
    """Dispatch the first attempt unless already done; True if a message was sent now."""
    meta, status = body["metadata"], body.get("status") or {}
    uid = meta["uid"]
    if phases.is_terminal(phases.parse(status.get("phase"))):
        return False
    if await redis.exists(names.dispatch_guard(uid)):
        return False
    spec = models.LongTaskSpec.model_validate(body.get("spec") or {})
    message = build(
        namespace=meta["namespace"], name=meta["name"], uid=uid, spec=spec, attempt=1, now=time.time()
    )
    queued = events.TaskEvent(
        kind=events.Kind.QUEUED,
        namespace=message.namespace,
        name=message.name,
        uid=uid,
        attempt=1,
        progress=0,
        message=f"queued on {names.queue(spec.pool)}",
    )
    pipe = redis.pipeline(transaction=True)
    events.queue_publish(pipe, queued)
    await pipe.execute()
    await asyncio.to_thread(
        celery.send_task,
        names.RUN_TASK,
        args=[message.model_dump(mode="json")],
        task_id=names.celery_task_id(uid, message.attempt),
        queue=names.queue(spec.pool),
        priority=spec.priority,
        soft_time_limit=spec.timeout_seconds,
        time_limit=spec.timeout_seconds + _HARD_LIMIT_GRACE_SECONDS,
    )
    await redis.set(names.dispatch_guard(uid), str(message.attempt))
    metrics.DISPATCHED.labels(pool=spec.pool).inc()
    return True


def plain(body: Any) -> dict[str, Any]:
    """A deep plain-dict copy of a Kopf body (whose nested values are read-only views)."""
    result: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return result


async def forget(*, redis: aioredis.Redis, uid: str) -> None:
    """Remove every Redis key of a LongTask that no longer exists."""
    await redis.delete(*names.task_keys(uid))
