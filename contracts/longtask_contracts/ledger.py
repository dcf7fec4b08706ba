"""The per-task state longtask keeps in Redis, and the writes that change it.

Each queue_* function only queues commands on a Redis pipeline (sync or asyncio) and
executes nothing: the caller runs the pipeline as one MULTI, so an event and the state
change it reports land together or not at all. Workers and the operator share these, so
the layout in names.py has exactly one writer's view.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from longtask_contracts import events, models, names, tracing

# How long a task's keys outlive its end (and a cancel flag its request): long enough for
# any redelivery to be recognised, short enough that nothing stays forever.
KEY_TTL_SECONDS = 30 * 24 * 3600
# How long a forgotten task's tombstone (names.tombstone) refuses sends and claims: longer
# than any sender can be late between reading a task and writing its current attempt (a
# gateway's first send, a retry or re-send the operator decided just before the delete).
TOMBSTONE_SECONDS = 7 * 24 * 3600


class Dispatch(BaseModel):
    """The Celery message body of one attempt (JSON; never pickle)."""

    namespace: str
    name: str
    uid: str
    spec: models.LongTaskSpec
    attempt: int = 1
    deadline: float = Field(description="Unix time by which the whole task must end.")
    trace: dict[str, str] = Field(
        default_factory=dict,
        description="W3C trace context (traceparent, tracestate) every attempt's dispatch span "
        "is a child of: the gateway's create, or the first dispatch. Copied to later attempts.",
    )

    def attempt_seconds(self, now: float) -> float:
        """This attempt's time limit: the per-attempt limit, never past the deadline."""
        limit = self.spec.attempt_timeout_seconds or self.spec.timeout_seconds
        return max(1.0, min(float(limit), self.deadline - now))

    def about(self) -> dict[str, Any]:
        """What log lines about this attempt carry (logs.task): the task, attempt and trace id."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "attempt": self.attempt,
            "trace_id": tracing.trace_id(self.trace),
        }

    def next(self) -> Dispatch:
        return self.model_copy(update={"attempt": self.attempt + 1})

    def event(self, kind: events.Kind, **fields: Any) -> events.TaskEvent:
        return events.TaskEvent(
            kind=kind, namespace=self.namespace, name=self.name, uid=self.uid, attempt=self.attempt, **fields
        )


def current_seconds(dispatch: Dispatch, *, now: float) -> int:
    """The expiry of `dispatch` written as the current attempt (and of what its send writes):
    the whole task's deadline, then KEY_TTL_SECONDS, so a send that comes after the task was
    forgotten leaves nothing forever, and a live task's keys outlast its deadline."""
    return int(max(0.0, dispatch.deadline - now)) + KEY_TTL_SECONDS


def current_attempt(raw: str | bytes | None) -> int | None:
    """The attempt number of a stored names.current record (None if there is none)."""
    return Dispatch.model_validate_json(raw).attempt if raw else None


class DeadLetter(BaseModel):
    """A task parked in the dead-letter queue: enough to understand it and to replay it."""

    namespace: str
    name: str
    uid: str
    task: str
    spec: dict[str, Any]
    attempts: int
    reason: str = Field(description="RetriesExhausted or Poison.")
    error: dict[str, str] = Field(default_factory=dict)
    at: float = Field(default_factory=time.time)


def queue_publish(pipe: Any, event: events.TaskEvent, *, ttl: int | None = None) -> None:
    """Publish `event` to the task's stream (SSE) and the status stream (operator).

    A terminal event also marks the task done (redeliveries then do nothing), drops it
    from the maintenance sets, and starts its ttlSecondsAfterFinished clock.
    """
    fields = event.encode()
    pipe.xadd(names.events_stream(event.uid), fields, maxlen=names.TASK_STREAM_MAXLEN, approximate=True)
    pipe.xadd(names.STATUS_STREAM, fields)  # trimmed by the operator once read (statussync)
    if event.terminal:
        pipe.set(names.done(event.uid), str(event.attempt), ex=KEY_TTL_SECONDS)
        for key in names.task_keys(event.uid):  # a finished task's traces go away on their own
            pipe.expire(key, KEY_TTL_SECONDS)
        for zset in (names.LEASES, names.SCHEDULE, names.DEADLINES):
            pipe.zrem(zset, event.uid)
        pipe.hdel(names.RUNNING, event.uid)
        if ttl is not None:
            pipe.zadd(names.EXPIRY, {event.uid: event.at + ttl})
            # Who to delete then, kept until the DELETE succeeded (maintenance forgets it).
            pipe.set(names.expiring(event.uid), f"{event.namespace}/{event.name}", ex=KEY_TTL_SECONDS + ttl)


def queue_queued(pipe: Any, dispatch: Dispatch, event: events.TaskEvent, *, now: float) -> None:
    """Before sending `dispatch`: publish its Queued event and make it the current attempt.

    Published before the message is sent, so readers see queued before started; the
    deadline of the whole task is watched from now on. The caller checks in the same
    transaction that the task has no tombstone (sending.py). Every key written expires
    (current_seconds), the task's event stream included, until its end sets its own expiry.
    """
    queue_publish(pipe, event)
    ttl = current_seconds(dispatch, now=now)
    pipe.set(names.current(dispatch.uid), dispatch.model_dump_json(), ex=ttl)
    pipe.expire(names.events_stream(dispatch.uid), ttl)
    pipe.zadd(names.DEADLINES, {dispatch.uid: dispatch.deadline})


def queue_retry(pipe: Any, following: Dispatch, *, at: float) -> None:
    """Schedule the `following` attempt at unix time `at` (the operator sends it then).
    The caller checks in the same transaction that the task has a current attempt or a
    lease of it, which a forgotten task has not, or no tombstone (store.finish)."""
    ttl = current_seconds(following, now=at)  # `at` is not before now: it outlives the deadline
    pipe.set(names.current(following.uid), following.model_dump_json(), ex=ttl)
    pipe.zrem(names.LEASES, following.uid)
    pipe.zadd(names.SCHEDULE, {following.uid: at})


def queue_attempt_end(
    pipe: Any,
    dispatch: Dispatch,
    event: events.TaskEvent,
    *,
    retry_at: float | None = None,
    dead_letter: DeadLetter | None = None,
) -> None:
    """An attempt ended (reported by its worker, or by the operator for a dead worker):
    publish its last event, schedule the next attempt or park the task, drop its lease."""
    queue_publish(pipe, event, ttl=dispatch.spec.ttl_seconds_after_finished)
    if retry_at is not None:
        queue_retry(pipe, dispatch.next(), at=retry_at)
    if dead_letter is not None:
        queue_dead_letter(pipe, dead_letter)
    pipe.zrem(names.LEASES, dispatch.uid)
    pipe.hdel(names.RUNNING, dispatch.uid)


def queue_dead_letter(pipe: Any, record: DeadLetter) -> None:
    pipe.hset(names.DLQ, record.uid, record.model_dump_json())


def queue_release_forgotten(pipe: Any, uid: str) -> None:
    """An attempt of a forgotten task ended on its worker: drop what its lease renewals and
    events wrote after the forget, and let its event stream expire; record nothing."""
    pipe.zrem(names.LEASES, uid)
    pipe.hdel(names.RUNNING, uid)
    pipe.expire(names.events_stream(uid), KEY_TTL_SECONDS)


def queue_forget(pipe: Any, uid: str, *, tombstone: bool = True) -> None:
    """Remove every trace of a task that no longer exists, and leave its tombstone (unless
    told not to: a finished task, which nothing sends again): a send or a retry decided
    before this, written after it, is refused (it checks for the tombstone in its own
    transaction), and so is a worker's claim."""
    pipe.delete(*names.task_keys(uid))
    if tombstone:
        pipe.set(names.tombstone(uid), "1", ex=TOMBSTONE_SECONDS)
    for zset in names.ZSETS:
        pipe.zrem(zset, uid)
    pipe.hdel(names.DLQ, uid)
    pipe.hdel(names.RUNNING, uid)
    pipe.hdel(names.STATUS_HELD, uid)  # a status the sync could not write (statusheld.py)
