"""The worker's lease scripts against a real Redis.

Covers: a claim is refused while held, after the task is done, for an attempt that is
not newer than one already started, and for a task without a current attempt (its
LongTask was deleted and the operator forgot it); renewal keeps the lease, takes back a lease that
vanished (so a retry queued meanwhile steps aside), and reports a lease taken by a newer
attempt, which makes the old attempt stop.
"""

from __future__ import annotations

import time
import uuid

from longtask_contracts import ledger, models, names
from longtask_worker import store


def _dispatch(uid: str, attempt: int) -> ledger.Dispatch:
    return ledger.Dispatch(
        namespace="ns",
        name="t",
        uid=uid,
        spec=models.LongTaskSpec(task="demo.noop"),
        attempt=attempt,
        deadline=time.time() + 60,
    )


def test_claim_and_renew(redis_url, redis_client):
    uid = str(uuid.uuid4())
    s = store.Store(store.connect(redis_url), pod="test-pod")
    first, second = _dispatch(uid, 1), _dispatch(uid, 2)
    try:
        assert not s.claim(first, worker="w1", lease_seconds=30), "no current attempt: forgotten"
        redis_client.set(names.current(uid), first.model_dump_json())  # what sending does first
        assert s.claim(first, worker="w1", lease_seconds=30)
        assert not s.claim(first, worker="w2", lease_seconds=30), "held"
        assert redis_client.zscore(names.LEASES, uid) is not None
        assert redis_client.hget(names.RUNNING, uid) == "default test-pod", "the autoscaler sees the pod busy"
        assert s.renew(first, worker="w1", lease_seconds=30)

        redis_client.delete(names.claim(uid))  # ran out during a long pause
        assert s.renew(first, worker="w1", lease_seconds=30), "a vanished lease is taken back"
        assert not s.claim(second, worker="w2", lease_seconds=30), "the queued retry steps aside"

        redis_client.set(names.claim(uid), "2:w2")  # a newer attempt took over
        assert not s.renew(first, worker="w1", lease_seconds=30)

        redis_client.delete(names.claim(uid))
        assert not s.claim(first, worker="w3", lease_seconds=30), "attempt 1 already started"
        redis_client.set(names.done(uid), "1")
        assert not s.claim(_dispatch(uid, 3), worker="w3", lease_seconds=30), "done"
    finally:
        redis_client.delete(*names.task_keys(uid))
        redis_client.zrem(names.LEASES, uid)
        redis_client.hdel(names.RUNNING, uid)
        s.redis.close()
