"""What a Redis that came back with less data (a failover, an older AOF, an empty restart) lost
of one unfinished LongTask, and what the operator sends again; pure, no I/O here.

The LongTask in etcd is the durable record; Redis replication is asynchronous, so after a
failover the new primary may lack the last writes. The operator (redisrepair.py) reads what
Redis holds of each unfinished task (RedisFacts) and, for a task Redis alone cannot show
alive (suspect), what etcd says of it (TaskFacts); decide() then says what to do. Each
action is idempotent under the worker's claim (keyed by uid and attempt, refused while a
lease is held or the task is done), so deciding twice, or racing a sender, never runs a task
twice at once. It must not read anything itself nor choose retries (failures.py does).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from longtask_contracts import phases

SENDING = "sending"  # the first attempt's guard while a sender is at work (longtask_runtime.sending)


class Action(enum.StrEnum):
    NOTHING = "nothing"  # Redis holds what the task needs, or it is over: leave it
    SEND_FIRST = "first"  # never sent as far as anyone knows: its first attempt, through its guard
    RESEND = "resend"  # its current attempt's message is in no queue: the same attempt again
    NEW_ATTEMPT = "new"  # its attempt record, or its running attempt's lease and end, are lost
    CANCEL = "cancel"  # spec.cancel is set and nothing in Redis ends it: it ends Cancelled


@dataclass(frozen=True)
class RedisFacts:
    """What Redis holds of one task (names.py keys), read after the workers' grace period."""

    current: int | None  # the attempt of names.current; None: no record
    done: bool  # names.done: a terminal event was published (it is in the status stream)
    claimed: bool  # names.claim: a worker holds a lease of an attempt
    tombstone: bool  # names.tombstone: forgotten (its LongTask is being deleted)
    started: int  # names.started: the highest attempt a worker claimed (0: none)
    guard: str | None  # names.dispatch_guard: sending / sent / refused, or None
    scheduled: bool  # in names.SCHEDULE: a retry waits for its time
    queued: bool  # a message of the current attempt is in a queue list, fetched or delivered
    batch: bool  # names.batch: a batch's ledger exists
    leased: bool = False  # in names.LEASES: the maintenance loop watches a lease of it


@dataclass(frozen=True)
class TaskFacts:
    """What etcd says of the task (its LongTask, read again from the apiserver)."""

    phase: phases.Phase
    attempts: int  # status.attempts: the highest attempt a worker started, as synced
    cancel: bool  # spec.cancel
    is_batch: bool


@dataclass(frozen=True)
class Decision:
    action: Action
    attempt: int = 0  # the attempt to send (RESEND, NEW_ATTEMPT, SEND_FIRST)
    reason: str = ""  # one line for the log and the LongTask's Event


def alive(redis: RedisFacts, *, is_batch: bool, trust_leases: bool = False) -> bool:
    """Whether Redis alone shows the task in hand (no need to read its LongTask): it is done,
    held by a worker, forgotten, being sent, waiting for its retry, queued, or a batch whose
    ledger runs its lanes. With `trust_leases` (no reset was seen: the pass at the operator's
    start), a task in the lease set is in hand too: the maintenance loop ends an attempt
    whose lease ran out as a lost worker, which it is; after a reset, that entry may be a
    stale copy whose worker finished on the lost primary."""
    if redis.done or redis.claimed or redis.tombstone or (trust_leases and redis.leased):
        return True
    if redis.current is None:
        return redis.guard == SENDING
    if is_batch:
        return redis.batch
    # A message of an attempt that already started is the copy its worker took (or one the
    # claim refuses): it says nothing of whether that attempt still runs.
    return redis.scheduled or (redis.queued and redis.started < redis.current)


def decide(redis: RedisFacts, task: TaskFacts, *, trust_leases: bool = False) -> Decision:
    """What to send again for a task whose LongTask says it is unfinished (see Action)."""
    if phases.is_terminal(task.phase) or alive(redis, is_batch=task.is_batch, trust_leases=trust_leases):
        return Decision(Action.NOTHING)
    if task.cancel:
        return Decision(Action.CANCEL, reason="cancelled on request; Redis had lost its state")
    after = max(task.attempts, redis.started, redis.current or 0)
    if redis.current is None:
        if after == 0 and redis.guard is None:
            return Decision(Action.SEND_FIRST, 1, "Redis holds no record of it: its first attempt is sent")
        return Decision(
            Action.NEW_ATTEMPT, after + 1, f"Redis lost its attempt record: attempt {after + 1} is sent"
        )
    if task.is_batch:
        return Decision(
            Action.NEW_ATTEMPT,
            after + 1,
            f"Redis lost the batch's ledger: the batch starts again as run {after + 1}",
        )
    ran = redis.started >= redis.current or (
        task.phase is phases.Phase.RUNNING and task.attempts >= redis.current
    )
    if ran:
        return Decision(
            Action.NEW_ATTEMPT,
            after + 1,
            f"attempt {redis.current} started, but Redis lost its lease and no worker took it back: "
            f"attempt {after + 1} is sent",
        )
    return Decision(
        Action.RESEND, redis.current, f"Redis lost the message of attempt {redis.current}: it is sent again"
    )
