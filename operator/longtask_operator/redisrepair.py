"""Finds that Redis restarted, failed over or lost data, and sends again what it lost.

Detection (check(), called by the maintenance loop before each lease scan): the run_id of
the Redis server, against the one the operator last wrote in names.REDIS_IDENTITY. The key
gone means Redis lost data (it restarted empty, or from a copy older than the key); another
run_id means another server process (a restart, or a Sentinel failover to a replica, which
may lack the last writes: replication is asynchronous). Either way it is counted
(longtask_operator_redis_resets_total) and logged in one line, lease expiries are held if
Redis holds any (maintenance.py) and, after `grace` seconds, every unfinished LongTask the watch follows is
reconciled against what Redis now holds (reconcile()).

The grace lets every running worker take its lease back on the new server: a worker's lease
thread renews every third of LONGTASK_LEASE_SECONDS and takes a vanished lease back
(worker store.py), so a task that still runs is never sent again, and meanwhile no lease is
declared expired for the only reason that Redis lost it. The pass also runs once at the
operator's start (a Redis that came back empty while no operator ran), at once unless a
reset was just seen.

What each task needs is longtask_contracts.redisloss's decision; this module reads the facts
(Redis, then the LongTask for the few Redis cannot show alive) and acts, each task on its
own (a failure is logged and the pass goes on), with a log line, a count by kind
(longtask_operator_redis_resent_total) and a Kubernetes Event `Resent` on the LongTask. It
must not write statuses (statussync.py does) nor decide retries (maintenance.py).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from longtask_contracts import events, ledger, logs, models, names, phases, redisloss, wire
from longtask_operator import dispatch, kube, loopguard, metrics, scope, taskwatch
from longtask_runtime import kubeerrors, sending

log = logging.getLogger(__name__)

_CHUNK = 500  # tasks read from Redis in one pipeline
# Lease expiries wait at most this long after the grace: a pass that keeps failing (the
# apiserver unreachable) must not keep a dead worker's attempt from being retried forever.
_HOLD_AFTER_GRACE_SECONDS = 60.0


class RedisRepair:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        celery: Celery,
        kube: kube.Kube,
        watch: taskwatch.TaskWatch,
        grace: float,
        interval: float = 1.0,
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.kube = kube
        self.watch = watch  # its inventory of unfinished tasks, its pools' claims
        self.grace = grace
        self.interval = interval
        self._identity: str | None = None  # the run_id seen last
        self._due: float | None = None  # monotonic time of the next pass; None: none due
        self._holding_until = 0.0  # monotonic: a reset was seen and its pass has not finished
        self._reset = False  # a reset was seen and its pass has not finished
        self._checked = asyncio.Event()  # the first check is done (the start's pass waits for it)
        self.guard = loopguard.Guard("redis-repair", first_delay=interval)

    # -- detection ---------------------------------------------------------------------
    async def check(self) -> bool:
        """Look at the server's identity; whether lease expiries must wait (a reset was seen
        and its pass has not run yet)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(names.REDIS_IDENTITY)
        pipe.execute_command("INFO", "server")
        marker, info = await pipe.execute()
        run_id = _run_id(info)
        marked = wire.text_or_none(marker)
        if marked != run_id:
            await self.redis.set(names.REDIS_IDENTITY, run_id)
            cause = "lost" if marked is None else "changed"
            metrics.REDIS_RESETS.labels(cause=cause).inc()
            self._due = time.monotonic() + self.grace
            self._reset = True
            leases = await self._leases()
            if leases:  # else nothing to hold: an empty Redis, or a new one
                self._holding_until = self._due + _HOLD_AFTER_GRACE_SECONDS
            log.warning(
                "Redis %s (server %s, last seen %s): %d leases held for %.0f s, then what it lost is sent",
                "lost the operator's marker key: it restarted empty or from older data"
                if marked is None
                else "is another server process: it restarted or failed over, and may lack the last writes",
                run_id[:12], (marked or self._identity or "none")[:12], leases, self.grace,
            )  # fmt: skip
        elif not self._checked.is_set():
            self._due = time.monotonic()  # the start's pass: nothing to wait for
        self._identity = run_id
        self._checked.set()
        return time.monotonic() < self._holding_until

    async def _leases(self) -> int:
        """How many leases Redis holds (tasks' and batch lanes')."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(names.LEASES)
        pipe.zcard(names.LANE_LEASES)
        return sum(int(n) for n in await pipe.execute())

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        await self._checked.wait()
        pause = self.interval
        while True:
            await asyncio.sleep(pause)
            try:
                if self._due is not None and time.monotonic() >= self._due and self.watch.listed():
                    self._due = None
                    await self.reconcile(after_reset=self._reset)
                    if self._due is None:  # no new reset meanwhile
                        self._holding_until, self._reset = 0.0, False
                self.guard.succeeded()
                pause = self.interval
            except Exception as exc:  # the whole pass again, later
                if self._due is None:
                    self._due = time.monotonic()
                pause = self.guard.failed(exc)

    async def reconcile(self, *, after_reset: bool = True) -> dict[str, int]:
        """One pass over the watch's unfinished LongTasks; how many of each action it took.
        Not `after_reset` (the pass at start), the lease set is trusted (redisloss.alive)."""
        trust = not after_reset
        taken: dict[str, int] = {}
        if after_reset and (settled := await self.settle_finished()):
            taken["settled"] = settled
        tasks = dict(self.watch.unfinished)
        uids = list(tasks)
        facts: dict[str, tuple[redisloss.RedisFacts, ledger.Dispatch | None]] = {}
        seen = _Messages()  # each pool's queues read once per pass, not once per chunk
        for start in range(0, len(uids), _CHUNK):
            facts.update(await self.facts(uids[start : start + _CHUNK], seen=seen))
        for uid, (found, current) in facts.items():
            if redisloss.alive(found, is_batch=bool(current and current.items), trust_leases=trust):
                continue
            task = tasks[uid]
            with logs.task(namespace=task.namespace, name=task.name, uid=uid):
                try:
                    action = await self._repair(
                        uid, found, current, namespace=task.namespace, name=task.name, trust_leases=trust
                    )
                except Exception as exc:  # this task at the next pass; the others now
                    self.guard.item_failed(exc, what="repairing this task after a Redis reset failed")
                    if self._due is None:
                        self._due = time.monotonic() + self.interval
                    continue
            if action is not redisloss.Action.NOTHING:
                taken[action.value] = taken.get(action.value, 0) + 1
        log.info("Redis repair: %d unfinished LongTasks checked; sent again: %s", len(uids), taken or "none")
        return taken

    async def settle_finished(self) -> int:
        """Tasks Redis holds as running or retrying (an older copy of its data) whose LongTask
        is already terminal in etcd: their end is recorded again (names.done, off the lease,
        retry and deadline sets, their running entry and message dropped), so the lease scan
        does not run a finished task again and a restored copy of its message is refused by
        the worker's claim. Only this operator's namespaces and attempts etcd knows of; a task
        the watch follows, one replayed whose status is behind, or one whose LongTask is gone
        (the sweep forgets it), is left alone. How many it settled."""
        members: set[str] = set()
        for zset in (names.LEASES, names.SCHEDULE):
            members.update(wire.text(m) for m in await self.redis.zrange(zset, 0, -1))
        candidates = sorted(uid for uid in members if uid not in self.watch.unfinished)
        pipe = self.redis.pipeline(transaction=False)
        for uid in candidates:
            pipe.get(names.current(uid))
            pipe.exists(names.done(uid))
        replies = await pipe.execute()
        settled = 0
        for uid, raw, done in zip(candidates, replies[::2], replies[1::2], strict=True):
            if raw is None or done:
                continue
            current = ledger.Dispatch.model_validate_json(raw)
            if not scope.in_scope(self.watch.namespaces, current.namespace):
                continue  # another operator's
            try:
                body = await self.kube.get(namespace=current.namespace, name=current.name)
            except kubeerrors.NotFound:
                continue
            status = body.get("status") or {}
            if body["metadata"]["uid"] != uid or not phases.is_terminal(phases.parse(status.get("phase"))):
                continue
            if current.attempt > int(status.get("attempts") or 0):
                continue  # an attempt etcd does not know of yet: a replay on its way
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(
                names.done(uid), str(status.get("attempts") or current.attempt), ex=ledger.KEY_TTL_SECONDS
            )
            for zset in (names.LEASES, names.SCHEDULE, names.DEADLINES):
                pipe.zrem(zset, uid)
            ledger.queue_release(pipe, uid)
            await pipe.execute()
            with logs.task(**current.about()):
                log.warning(
                    "after a Redis reset: Redis had it unfinished, its LongTask is %s: end recorded again",
                    status.get("phase"),
                )
            metrics.REDIS_RESENT.labels(kind="settled").inc()
            settled += 1
        return settled

    async def facts(
        self, uids: list[str], *, seen: _Messages | None = None
    ) -> dict[str, tuple[redisloss.RedisFacts, ledger.Dispatch | None]]:
        """What Redis holds of each of `uids` (and its current attempt); a task whose current
        attempt Redis keeps gets its deadline watched again if Redis lost that (ZADD NX)."""
        pipe = self.redis.pipeline(transaction=False)
        for uid in uids:
            pipe.get(names.current(uid))
            pipe.exists(names.done(uid))
            pipe.exists(names.claim(uid))
            pipe.exists(names.tombstone(uid))
            pipe.get(names.started(uid))
            pipe.get(names.dispatch_guard(uid))
            pipe.zscore(names.SCHEDULE, uid)
            pipe.exists(names.batch(uid))
            pipe.zscore(names.LEASES, uid)
        replies = await pipe.execute()
        rows = [replies[i : i + 9] for i in range(0, len(replies), 9)]
        currents = {
            uid: ledger.Dispatch.model_validate_json(row[0]) if row[0] else None
            for uid, row in zip(uids, rows, strict=True)
        }
        pools = {c.spec.pool for c in currents.values() if c is not None and not c.items}
        queued = await self.messages(pools, seen=seen or _Messages())
        repair = self.redis.pipeline(transaction=False)
        out: dict[str, tuple[redisloss.RedisFacts, ledger.Dispatch | None]] = {}
        for uid, row in zip(uids, rows, strict=True):
            current = currents[uid]
            _, done, claimed, tombstone, started, guard, scheduled, batch, leased = row
            out[uid] = (
                redisloss.RedisFacts(
                    current=current.attempt if current else None,
                    done=bool(done),
                    claimed=bool(claimed),
                    tombstone=bool(tombstone),
                    started=int(started or 0),
                    guard=wire.text_or_none(guard),
                    scheduled=scheduled is not None,
                    queued=current is not None and names.celery_task_id(uid, current.attempt) in queued,
                    batch=bool(batch),
                    leased=leased is not None,
                ),
                current,
            )
            if current is not None and not done and not tombstone:
                repair.zadd(names.DEADLINES, {uid: current.deadline}, nx=True)
        if out:
            await repair.execute()
        return out

    async def messages(self, pools: set[str], *, seen: _Messages) -> set[str]:
        """The Celery task ids of every message of `pools` in a queue, fetched by a worker
        (kombu's unacked hash) or recorded as delivered (names.DELIVERIES), added to what
        `seen` holds of this pass (a pool's queues and the fetched ones are read once per
        pass: a pass over a large backlog must not parse every queue once per chunk). Queue
        lists are read before the fetched ones: a message a worker takes meanwhile is in the
        latter. A message sent after its pool was read looks lost and is sent again: the
        worker's claim takes one copy."""
        fresh = sorted(pools - seen.pools)
        pipe = self.redis.pipeline(transaction=False)
        for pool in fresh:
            for key in names.queue_lists(pool):
                pipe.lrange(key, 0, -1)
        for entries in await pipe.execute() if fresh else []:
            seen.ids.update(_task_id(json.loads(raw)) for raw in entries)
        seen.pools.update(fresh)
        if fresh:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hvals(names.KOMBU_UNACKED)
            pipe.hvals(names.DELIVERIES)
            unacked, deliveries = await pipe.execute()
            seen.ids.update(_task_id(json.loads(raw)[0]) for raw in unacked)
            for raw in deliveries:
                delivery = ledger.Delivery.decode(raw)
                if delivery is not None:
                    seen.ids.add(names.celery_task_id(delivery.uid, delivery.attempt))
        return seen.ids

    # -- one task ----------------------------------------------------------------------
    async def _repair(
        self,
        uid: str,
        found: redisloss.RedisFacts,
        current: ledger.Dispatch | None,
        *,
        namespace: str,
        name: str,
        trust_leases: bool,
    ) -> redisloss.Action:
        try:
            body = await self.kube.get(namespace=namespace, name=name)
        except kubeerrors.NotFound:
            return redisloss.Action.NOTHING  # its DELETED event follows
        if body["metadata"]["uid"] != uid:
            return redisloss.Action.NOTHING  # a namesake: this one's DELETED event follows
        status, spec = body.get("status") or {}, models.LongTaskSpec.model_validate(body.get("spec") or {})
        decision = redisloss.decide(
            found,
            redisloss.TaskFacts(
                phase=phases.parse(status.get("phase")),
                attempts=int(status.get("attempts") or 0),
                cancel=spec.cancel,
                is_batch=spec.is_batch,
            ),
            trust_leases=trust_leases,
        )
        action = decision.action
        if action is redisloss.Action.NOTHING:
            return action
        if action is redisloss.Action.CANCEL:
            await dispatch.cancel(redis=self.redis, body=body, reason=decision.reason)
        elif action is redisloss.Action.SEND_FIRST:
            await taskwatch.reconcile(
                redis=self.redis, celery=self.celery, kube=self.kube, body=body, pools=self.watch.pools
            )
        elif action is redisloss.Action.RESEND and current is not None:
            await dispatch.send(redis=self.redis, celery=self.celery, dispatch=current)
        else:
            await self._new_attempt(body, current, attempt=decision.attempt, reason=decision.reason)
        log.warning("after a Redis reset: %s", decision.reason)
        metrics.REDIS_RESENT.labels(kind=action.value).inc()
        await self.kube.post_event(
            namespace=namespace, name=name, uid=uid, reason="Resent", message=decision.reason, warning=True
        )
        return action

    async def _new_attempt(
        self, body: dict[str, Any], current: ledger.Dispatch | None, *, attempt: int, reason: str
    ) -> None:
        """Send `attempt` of the task, a batch with its inline items (its ledger starts again).
        An attempt that started and whose lease and end Redis lost is ended first with a
        Retrying event (error RedisDataLost), off the lease set, so its history entry closes
        and no lease scan takes it for a crash of the new one."""
        now = time.time()
        fresh = sending.first_attempt(body, now=now)
        deadline = (
            current.deadline
            if current is not None
            else _created(body, now)
            + sending.deadline_seconds(models.LongTaskSpec.model_validate(body.get("spec") or {}))
        )
        following = fresh.model_copy(update={"attempt": attempt, "deadline": deadline})
        if current is not None and not current.items:
            lost = current.event(
                events.Kind.RETRYING, message=reason, error={"type": "RedisDataLost", "message": reason}
            )
            pipe = self.redis.pipeline(transaction=True)
            ledger.queue_publish(pipe, lost)
            pipe.zrem(names.LEASES, current.uid)
            await pipe.execute()
        items = (body.get("spec") or {}).get("items")
        if await sending.send(redis=self.redis, celery=self.celery, dispatch=following, items=items):
            metrics.DISPATCHED.labels(pool=metrics.pool_label(following.spec.pool)).inc()


@dataclass
class _Messages:
    """What one pass has read of the queues: the pools read, the task ids found."""

    pools: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)


def _run_id(info: Any) -> str:
    """The run_id out of an INFO server reply (parsed into a dict, or raw text)."""
    if isinstance(info, dict):
        return str(info["run_id"])
    for line in wire.text(info).splitlines():
        if line.startswith("run_id:"):
            return line.partition(":")[2].strip()
    raise ValueError("INFO server has no run_id")


def _task_id(message: Any) -> str:
    """The Celery task id of a kombu message (its headers' id)."""
    return str(((message or {}).get("headers") or {}).get("id", ""))


def _created(body: dict[str, Any], now: float) -> float:
    """The LongTask's creation time (unix), `now` if it has none: its deadline counts from it."""
    stamp = body["metadata"].get("creationTimestamp")
    if not stamp:
        return now
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
