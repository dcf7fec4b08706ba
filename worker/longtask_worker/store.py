"""All of the worker's Redis I/O: events, the run lease, attempt outcomes, the cancel flag.

It must not decide anything: runner.py decides, this module reads and writes keys
(their layout is in longtask_contracts.names and .ledger).
"""

from __future__ import annotations

import time

import redis
from redis.exceptions import WatchError

from longtask_contracts import events, ledger, names, wire
from longtask_runtime import redisconn

# Take the lease only if the task is not done, nobody holds it, no later (or the same)
# attempt has started, and the task still has a current attempt and no tombstone: a
# redelivered or duplicated message then does nothing, nor does a queued message of a
# LongTask that was deleted (the operator forgot its keys, current attempt included, and
# left a tombstone that refuses a current attempt written late; dispatch.forget).
# Taken: the attempt's names.RUNNING entry replaces any older one (ledger.RUNNING_LUA) and
# its message leaves fetched(pool). Refused: the message has nothing to do, so its records
# go (its ack follows).
# KEYS/ARGV: ledger.RUNNING_KEYS/ARGS, then claim, done, started, LEASES, current, tombstone;
# attempt, holder, lease ms, lease end, uid, RUNNING entry, pool, pod, tag, Delivery.
_CLAIM = (
    ledger.RUNNING_LUA
    + """
local attempt, uid, pool, tag = ARGV[3], ARGV[7], ARGV[9], ARGV[11]
if redis.call('EXISTS', KEYS[10]) == 1 or redis.call('EXISTS', KEYS[9]) == 0
    or redis.call('EXISTS', KEYS[6]) == 1
    or redis.call('EXISTS', KEYS[5]) == 1
    or tonumber(redis.call('GET', KEYS[7]) or '0') >= tonumber(attempt) then
  if tag ~= '' then drop(pool, tag) end
  return 0
end
redis.call('SET', KEYS[5], ARGV[4], 'PX', ARGV[5])
redis.call('SET', KEYS[7], attempt)
redis.call('ZADD', KEYS[8], ARGV[6], uid)
take(uid, ARGV[8], pool, ARGV[10])
if tag ~= '' then
  redis.call('ZREM', ARGV[2] .. pool, tag)
  redis.call('HSET', KEYS[2], tag, ARGV[12])
end
return 1
"""
)


# Renew the lease if it is still this attempt's. A lease that vanished (it ran out during
# a long pause, or Redis lost it) is taken back: a retry the operator may have queued then
# finds it held and steps aside. A lease now held by another attempt means this one was
# superseded: 0, and the caller stops.
# KEYS/ARGV: ledger.RUNNING_KEYS/ARGS, then claim, LEASES; holder, lease ms, lease end,
# uid, RUNNING entry, pool, pod.
_RENEW = (
    ledger.RUNNING_LUA
    + """
local holder = redis.call('GET', KEYS[5])
if holder and holder ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[6])
take(ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return 1
"""
)


def connect(where: redisconn.Target | str) -> redis.Redis:
    """A client that rides out a Redis restart or Sentinel failover (longtask_runtime.redisconn)."""
    return redisconn.sync_client(where)


class Store:
    """`pod` names where this worker runs (its pod, or its host outside Kubernetes): the
    autoscaler reads it from names.busy(pool) to know which pods are busy.

    `tag` arguments are the delivery tag of the attempt's message ("" if unknown): the
    attempt's records name it, so whoever ends the attempt drops the message's too."""

    def __init__(self, client: redis.Redis, *, pod: str) -> None:
        self.redis = client
        self.pod = pod
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)

    def publish(self, event: events.TaskEvent, *, ttl: int | None = None) -> None:
        pipe = self.redis.pipeline(transaction=True)
        ledger.queue_publish(pipe, event, ttl=ttl)
        pipe.execute()

    def fetched(self, delivery: ledger.Delivery, *, tag: str, at: float) -> None:
        """The worker's main process took the message `tag` from its queue: record it, so the
        pool counts it until it is claimed and the operator can tell what it is."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(names.DELIVERIES, tag, delivery.encode())
        pipe.zadd(names.fetched(delivery.pool), {tag: at})
        pipe.execute()

    def claim(self, dispatch: ledger.Dispatch, *, worker: str, lease_seconds: float, tag: str = "") -> bool:
        uid = dispatch.uid
        keys = [
            *ledger.RUNNING_KEYS,
            names.claim(uid),
            names.done(uid),
            names.started(uid),
            names.LEASES,
            names.current(uid),
            names.tombstone(uid),
        ]
        delivery = ledger.Delivery(pool=dispatch.spec.pool, uid=uid, attempt=dispatch.attempt, pod=self.pod)
        args: list[str | int | float] = [
            *ledger.RUNNING_ARGS,
            dispatch.attempt,
            f"{dispatch.attempt}:{worker}",
            int(lease_seconds * 1000),
            time.time() + lease_seconds,
            uid,
            self.running(dispatch, tag=tag).encode(),
            dispatch.spec.pool,
            self.pod,
            tag,
            delivery.encode(),
        ]
        return bool(self._claim(keys=keys, args=args))

    def renew(self, dispatch: ledger.Dispatch, *, worker: str, lease_seconds: float, tag: str = "") -> bool:
        """Extend the lease; False if another attempt holds it (this one was superseded)."""
        uid = dispatch.uid
        args: list[str | int | float] = [
            *ledger.RUNNING_ARGS,
            f"{dispatch.attempt}:{worker}",
            int(lease_seconds * 1000),
            time.time() + lease_seconds,
            uid,
            self.running(dispatch, tag=tag).encode(),
            dispatch.spec.pool,
            self.pod,
        ]
        keys = [*ledger.RUNNING_KEYS, names.claim(uid), names.LEASES]
        return bool(self._renew(keys=keys, args=args))

    def running(self, dispatch: ledger.Dispatch, *, tag: str) -> ledger.Claim:
        """This worker's names.RUNNING entry for `dispatch`."""
        return ledger.Claim(pool=dispatch.spec.pool, pod=self.pod, tag=tag)

    def finish(
        self,
        *,
        dispatch: ledger.Dispatch,
        worker: str,
        event: events.TaskEvent,
        retry_at: float | None = None,
        dead_letter: ledger.DeadLetter | None = None,
        tag: str = "",
    ) -> bool:
        """End the attempt: publish its last event, schedule a retry or dead-letter, release.

        Only while the attempt is still the task's: it holds the lease (or its lease ran out
        and no other attempt replaced it), the task is not done, and it was not forgotten (a
        tombstone: its LongTask is gone, so no retry of it may be scheduled). Checked and
        written in one transaction (WATCH): a stalled attempt that returns after the operator
        moved on changes nothing, and a deadline the operator enforced meanwhile keeps its
        single terminal event. Returns whether the end was recorded. An attempt of a
        forgotten task only releases what it wrote since (its lease, its running entry) and
        lets its event stream expire. Either way the attempt's own names.RUNNING entry and
        its message's records go (its ack follows).
        """
        uid = dispatch.uid
        mine = f"{dispatch.attempt}:{worker}"
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    keys = names.claim(uid), names.current(uid), names.done(uid), names.tombstone(uid)
                    pipe.watch(*keys)  # type: ignore[no-untyped-call]
                    claim, current, done, tombstone = pipe.mget(keys)
                    holder = wire.text_or_none(claim)
                    latest = ledger.current_attempt(current)
                    ours = holder == mine or (holder is None and latest == dispatch.attempt)
                    recorded = ours and done is None and tombstone is None
                    pipe.multi()
                    if recorded:
                        ledger.queue_attempt_end(
                            pipe, dispatch, event, retry_at=retry_at, dead_letter=dead_letter
                        )
                        pipe.delete(names.crashes(uid))
                    elif tombstone is not None:
                        ledger.queue_release_forgotten(pipe, uid)
                    if holder == mine or recorded:
                        pipe.delete(names.claim(uid))
                    ledger.queue_release(pipe, uid, expect=self.running(dispatch, tag=tag))
                    if tag:
                        ledger.queue_drop_delivery(pipe, pool=dispatch.spec.pool, tag=tag)
                    pipe.execute()
                    return recorded
                except WatchError:
                    continue  # the operator or another attempt wrote meanwhile: look again

    def cancel_requested(self, uid: str) -> bool:
        """The cancel flag is up, or the task was forgotten (its LongTask is gone)."""
        return bool(self.redis.exists(names.cancel_flag(uid), names.tombstone(uid)))
