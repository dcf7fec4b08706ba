"""What the operator finds lost of a task when Redis comes back with less data, on a real Redis.

Covers: the operator reads what Redis holds of a task (redisrepair.RedisRepair.facts) after
a real send (the Celery message in its queue list) and a real worker claim
(longtask_worker.store), and the pure decision (longtask_contracts.redisloss) says:
- a queued attempt, a claimed one, one waiting for its retry, a done one: nothing to send;
- the message lost (its queue list gone): the same attempt again;
- the lease lost after the attempt started (no worker took it back): a new attempt, numbered
  after what ran, also when etcd knows of more attempts than Redis, and although the
  worker's record of the delivered message is still there;
- the attempt record lost: a new attempt; never sent by anyone: the first attempt;
- a task whose terminal event survived (done) is not sent again, whatever else was lost;
- at the operator's start (no reset seen), a task in the lease set is the maintenance
  loop's; after a reset, that entry proves nothing;
- the detection: a new Redis (no marker), a marker that names another server, and data lost
  (the marker gone) each count as a reset and hold lease expiries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from longtask_contracts import ledger, models, names, phases, redisloss
from longtask_dev import cluster as cluster_mod
from longtask_dev import procs
from longtask_operator import metrics, redisrepair
from longtask_runtime import redisopts, sending
from longtask_worker import store

RUNNING = redisloss.TaskFacts(phase=phases.Phase.RUNNING, attempts=1, cancel=False, is_batch=False)
QUEUED = redisloss.TaskFacts(phase=phases.Phase.QUEUED, attempts=0, cancel=False, is_batch=False)


def _dispatch(uid: str, *, pool: str) -> ledger.Dispatch:
    return ledger.Dispatch(
        namespace="ns",
        name=f"t-{uid[:8]}",
        uid=uid,
        spec=models.LongTaskSpec(task="demo.noop", pool=pool),
        attempt=1,
        deadline=time.time() + 600,
    )


def _repair(client: aioredis.Redis) -> redisrepair.RedisRepair:
    # Only facts() and check() are used here: they read and write Redis alone.
    return redisrepair.RedisRepair(redis=client, celery=None, kube=None, watch=None, grace=0)  # type: ignore[arg-type]


async def _facts(client: aioredis.Redis, uid: str) -> redisloss.RedisFacts:
    return (await _repair(client).facts([uid]))[uid][0]


def test_what_is_lost_after_a_send_and_a_claim(redis_url, redis_client):
    pool = f"p{uuid.uuid4().hex[:8]}"  # its own queue: nothing else is in it

    async def run() -> list[Any]:
        client = redisopts.async_client(redis_url)
        celery = sending.celery_sender(redis_url)
        seen: list[Any] = []
        try:
            uid = str(uuid.uuid4())
            d = _dispatch(uid, pool=pool)
            assert await sending.send(redis=client, celery=celery, dispatch=d)
            redis_client.set(names.dispatch_guard(uid), sending.SENT)  # as send_first marks it
            seen.append(await _facts(client, uid))  # 0: queued
            for key in names.queue_lists(pool):
                redis_client.delete(key)  # the message was written after the last replicated write
            seen.append(await _facts(client, uid))  # 1: message lost
            worker = store.Store(store.connect(redis_url), pod="pod-1")
            assert worker.claim(d, worker="w1", lease_seconds=30, tag="tag-1")  # its delivery recorded
            seen.append(await _facts(client, uid))  # 2: claimed
            redis_client.delete(names.claim(uid))  # the lease lost, and no worker took it back
            seen.append(await _facts(client, uid))  # 3: started, no lease
            redis_client.set(names.done(uid), "1")  # ... but its terminal event survived
            seen.append(await _facts(client, uid))  # 4: done
            redis_client.delete(names.done(uid), names.current(uid), names.started(uid))
            seen.append(await _facts(client, uid))  # 5: no record left but the guard
            redis_client.delete(names.dispatch_guard(uid))
            seen.append(await _facts(client, uid))  # 6: nothing at all
            retry = str(uuid.uuid4())
            pipe = client.pipeline(transaction=True)
            ledger.queue_retry(pipe, _dispatch(retry, pool=pool).next(), at=time.time() + 60)
            await pipe.execute()
            seen.append(await _facts(client, retry))  # 7: waiting for its retry
            seen.append(redis_client.zscore(names.DEADLINES, retry))  # 8: its deadline watched again
        finally:
            await client.aclose()
        return seen

    queued, lost, claimed, unleased, done, unrecorded, nothing, retrying, deadline = asyncio.run(run())
    assert queued.queued and queued.current == 1
    assert redisloss.decide(queued, QUEUED).action is redisloss.Action.NOTHING
    assert not lost.queued
    assert redisloss.decide(lost, QUEUED) == redisloss.Decision(
        redisloss.Action.RESEND, 1, "Redis lost the message of attempt 1: it is sent again"
    )
    assert claimed.claimed and claimed.started == 1
    assert redisloss.decide(claimed, RUNNING).action is redisloss.Action.NOTHING
    decision = redisloss.decide(unleased, RUNNING)
    assert (decision.action, decision.attempt) == (redisloss.Action.NEW_ATTEMPT, 2)
    more = redisloss.TaskFacts(phase=phases.Phase.RUNNING, attempts=3, cancel=False, is_batch=False)
    assert redisloss.decide(unleased, more).attempt == 4, "numbered after what etcd says ran"
    assert unleased.leased, "the stale lease entry is still there"
    assert unleased.queued, "the delivered copy is still recorded, yet the attempt is lost"
    assert redisloss.decide(unleased, RUNNING, trust_leases=True).action is redisloss.Action.NOTHING
    assert done.done and redisloss.decide(done, RUNNING).action is redisloss.Action.NOTHING
    assert unrecorded.current is None and unrecorded.guard == sending.SENT
    decision = redisloss.decide(unrecorded, RUNNING)
    assert (decision.action, decision.attempt) == (redisloss.Action.NEW_ATTEMPT, 2)
    pending = redisloss.TaskFacts(phase=phases.Phase.PENDING, attempts=0, cancel=False, is_batch=False)
    assert redisloss.decide(unrecorded, pending).attempt == 1, "sent, never started: attempt 1 again"
    assert redisloss.decide(nothing, pending).action is redisloss.Action.SEND_FIRST
    cancelled = redisloss.TaskFacts(phase=phases.Phase.QUEUED, attempts=0, cancel=True, is_batch=False)
    assert redisloss.decide(nothing, cancelled).action is redisloss.Action.CANCEL
    succeeded = redisloss.TaskFacts(phase=phases.Phase.SUCCEEDED, attempts=1, cancel=False, is_batch=False)
    assert redisloss.decide(nothing, succeeded).action is redisloss.Action.NOTHING
    assert retrying.scheduled and redisloss.decide(retrying, RUNNING).action is redisloss.Action.NOTHING
    assert deadline is not None, "Redis lost the deadline entry of a waiting retry: watched again"


def test_a_batch_whose_ledger_is_lost_starts_again():
    batch = redisloss.TaskFacts(phase=phases.Phase.RUNNING, attempts=1, cancel=False, is_batch=True)
    kept = redisloss.RedisFacts(
        current=1, done=False, claimed=False, tombstone=False, started=0, guard="sent",
        scheduled=False, queued=False, batch=True,
    )  # fmt: skip
    assert redisloss.decide(kept, batch).action is redisloss.Action.NOTHING, "its lanes are the batch's"
    lost = redisloss.RedisFacts(
        current=1, done=False, claimed=False, tombstone=False, started=0, guard="sent",
        scheduled=False, queued=False, batch=False,
    )  # fmt: skip
    decision = redisloss.decide(lost, batch)
    assert (decision.action, decision.attempt) == (redisloss.Action.NEW_ATTEMPT, 2)


@pytest.fixture
def own_redis(tmp_path: Path):
    """A Redis of this test's own, which it restarts and empties."""
    port = procs.free_port()
    child = cluster_mod.redis_child(port=port, data=tmp_path / "data", log=tmp_path / "redis.log").start()
    cluster_mod.wait_for_redis(port=port, child=child)
    yield port, child
    child.stop()


def _resets(cause: str) -> float:
    return metrics.REDIS_RESETS.labels(cause=cause)._value.get()


def test_a_reset_is_found_and_holds_lease_expiries(own_redis):
    port, child = own_redis
    url = f"redis://127.0.0.1:{port}/0"

    async def look(repair: redisrepair.RedisRepair) -> bool:
        client = redisopts.async_client(url)
        repair.redis = client
        try:
            return await repair.check()
        finally:
            await client.aclose()

    with redis.Redis(port=port) as raw:
        raw.zadd(names.LEASES, {"some-uid": time.time() + 30})  # an attempt runs
    repair = redisrepair.RedisRepair(redis=None, celery=None, kube=None, watch=None, grace=60)  # type: ignore[arg-type]
    lost, changed = _resets("lost"), _resets("changed")
    assert asyncio.run(look(repair)), "no marker: a Redis met first, or one that lost it; leases held"
    assert _resets("lost") == lost + 1
    again = redisrepair.RedisRepair(redis=None, celery=None, kube=None, watch=None, grace=60)  # type: ignore[arg-type]
    assert not asyncio.run(look(again)), "the same server, marker kept: an operator restart"
    assert _resets("lost") == lost + 1
    cluster_mod.wait_for_redis(port=port, child=child.restart())  # AOF on: the marker survives
    assert asyncio.run(look(again)), "another server process"
    assert _resets("changed") == changed + 1
    with redis.Redis(port=port) as raw:
        raw.flushall()
    later = redisrepair.RedisRepair(redis=None, celery=None, kube=None, watch=None, grace=60)  # type: ignore[arg-type]
    asyncio.run(look(later))
    assert not asyncio.run(look(later)), "the marker written again"
    assert _resets("lost") == lost + 2, "the marker gone: data lost"
    assert later._due is not None, "a pass is due after the grace"
