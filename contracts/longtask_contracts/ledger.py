"""The per-task state longtask keeps in Redis, and the writes that change it.

Each queue_* function only queues commands on a Redis pipeline (sync or asyncio) and
executes nothing: the caller runs the pipeline as one MULTI, so an event and the state
change it reports land together or not at all. Workers and the operator share these, so
the layout in names.py has exactly one writer's view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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
    items: int = Field(
        default=0,
        description="How many items the task's batch has (0: not a batch). The spec carries no "
        "inline items: they are in Redis from the batch's start on (batchledger.py).",
    )
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
        queue_release(pipe, event.uid)
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
    queue_release(pipe, dispatch.uid)


def queue_dead_letter(pipe: Any, record: DeadLetter) -> None:
    pipe.hset(names.DLQ, record.uid, record.model_dump_json())


def queue_release_forgotten(pipe: Any, uid: str) -> None:
    """An attempt of a forgotten task ended on its worker: drop what its lease renewals and
    events wrote after the forget, and let its event stream expire; record nothing."""
    pipe.zrem(names.LEASES, uid)
    queue_release(pipe, uid)
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
    queue_release(pipe, uid)
    pipe.hdel(names.STATUS_HELD, uid)  # a status the sync could not write (statusheld.py)


# -- in-flight work: what the autoscaler counts (workload.py) ----------------------------
#
# A message a worker takes from a pool's queue is recorded twice by the worker's main
# process when it fetches it (Delivery in names.DELIVERIES, its tag in names.fetched(pool));
# the claim script moves it to names.RUNNING (Claim) and counts its pod in names.busy(pool).
# Every removal of a RUNNING entry goes through queue_release, which keeps busy(pool) equal to
# the entries it counts and drops the message's delivery, kombu's `unacked` entry included.


@dataclass(frozen=True)
class Delivery:
    """The worker's record of one message it fetched (names.DELIVERIES, by delivery tag)."""

    pool: str
    uid: str
    attempt: int
    pod: str

    def encode(self) -> str:
        return f"{self.pool} {self.uid} {self.attempt} {self.pod}"

    @classmethod
    def decode(cls, raw: str | bytes) -> Delivery | None:
        parts = (raw.decode() if isinstance(raw, bytes) else raw).split(" ")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(pool=parts[0], uid=parts[1], attempt=int(parts[2]), pod=parts[3])


@dataclass(frozen=True)
class Claim:
    """A claimed attempt's entry in names.RUNNING: its pool, its pod, and the delivery tag of
    its message ("" if unknown)."""

    pool: str
    pod: str
    tag: str = ""

    def encode(self) -> str:
        return f"{self.pool} {self.pod} {self.tag}".rstrip()

    @classmethod
    def decode(cls, raw: str | bytes) -> Claim | None:
        parts = (raw.decode() if isinstance(raw, bytes) else raw).split(" ")
        if len(parts) not in (2, 3):
            return None
        return cls(pool=parts[0], pod=parts[1], tag=parts[2] if len(parts) == 3 else "")


# Lua shared by the scripts that change names.RUNNING. Every such script takes these
# first: KEYS[1..4] = RUNNING, DELIVERIES, kombu's unacked hash and its index;
# ARGV[1..2] = the key prefixes of busy(pool) and fetched(pool). The keys of a pool named
# by a stored entry are built here: longtask needs one standalone Redis (kombu's Redis
# transport has no Cluster support either), where a script may reach any key.
RUNNING_KEYS = [names.RUNNING, names.DELIVERIES, names.KOMBU_UNACKED, names.KOMBU_UNACKED_INDEX]
RUNNING_ARGS = [names.busy(""), names.fetched("")]
RUNNING_LUA = """
local function drop(pool, tag)
  redis.call('HDEL', KEYS[2], tag)
  redis.call('ZREM', ARGV[2] .. pool, tag)
  redis.call('HDEL', KEYS[3], tag)
  redis.call('ZREM', KEYS[4], tag)
end
local function release(uid, expect)
  local entry = redis.call('HGET', KEYS[1], uid)
  if not entry or (expect ~= '' and entry ~= expect) then return 0 end
  redis.call('HDEL', KEYS[1], uid)
  local pool, pod, tag = string.match(entry, '^(%S+) (%S+) ?(%S*)$')
  if pool then
    if redis.call('HINCRBY', ARGV[1] .. pool, pod, -1) <= 0 then
      redis.call('HDEL', ARGV[1] .. pool, pod)
    end
    if tag ~= '' then drop(pool, tag) end
  end
  return 1
end
local function take(uid, entry, pool, pod)
  local old = redis.call('HGET', KEYS[1], uid)
  if old == entry then return end
  if old then release(uid, old) end
  redis.call('HSET', KEYS[1], uid, entry)
  redis.call('HINCRBY', ARGV[1] .. pool, pod, 1)
end
"""
_RELEASE = RUNNING_LUA + "return release(ARGV[3], ARGV[4])\n"


def queue_release(pipe: Any, uid: str, *, expect: Claim | None = None) -> None:
    """Drop the task's names.RUNNING entry (only if it is `expect`, when given), its pod's
    count in busy(pool), and its message: the worker's Delivery and kombu's `unacked` entry
    (once the attempt ended, the message has nothing left to do; its worker's ack, if it
    comes, finds nothing)."""
    keys = RUNNING_KEYS
    pipe.eval(_RELEASE, len(keys), *keys, *RUNNING_ARGS, uid, expect.encode() if expect else "")


def queue_drop_delivery(pipe: Any, *, pool: str, tag: str) -> None:
    """Forget one fetched message: the worker's record and kombu's `unacked` entry."""
    pipe.hdel(names.DELIVERIES, tag)
    pipe.zrem(names.fetched(pool), tag)
    pipe.hdel(names.KOMBU_UNACKED, tag)
    pipe.zrem(names.KOMBU_UNACKED_INDEX, tag)
