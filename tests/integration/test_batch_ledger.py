"""A batch's state in a real Redis, changed only by the real code: the sender's start
(runtime sending), the worker's lane store (claim, take, report, park) and the operator's
batch steps (lost lanes, wakes, the end, cancel, replay, forget).

Covers:
- a start stores the items and queues `parallelism` lanes (never more than the items), each
  due to be sent again until marked sent; started again, it changes nothing;
- a lane's token is claimed once: a stale or duplicated token is refused, and so is a lane
  of a deleted (tombstoned) batch;
- items are taken in index order, a chunk at a time; a retried item is taken alone; a lane
  yields when a task of its priority or above waits in the pool's main queue, and not for a
  lower one;
- every item ends exactly once in the counts, whatever order lanes report in; a report of a
  lane the operator declared lost records nothing;
- a lost lane's chunk returns to the queue with the crash noted but no attempt counted; a
  lost lane that held one item counts the attempt (and fails it as poison after enough);
- the autoscaler counts a batch's queued items (at most its lanes not running) as queued,
  and a claimed lane as running on its pod;
- maxFailedItems stops the rest (counted cancelled) and the end is Failed with the indexes;
  cancel ends it Cancelled once no item is held; replay requeues only the failed items;
- forget leaves no lane lease, send, running entry or pool count behind.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from longtask_contracts import batch, batchledger, ledger, names
from longtask_operator import batches, dispatch, workload
from longtask_runtime import redisopts, sending
from longtask_worker import lanestore, store
from tests import pools as test_pools


@pytest.fixture
async def aredis(redis_url):
    client = redisopts.async_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def celery(redis_url):
    return sending.celery_sender(redis_url)


def _body(n: int, *, pool: str, **spec: Any) -> dict[str, Any]:
    uid = str(uuid.uuid4())
    return {
        "metadata": {"namespace": "ns", "name": f"b-{uid[:6]}", "uid": uid},
        "spec": {"task": "demo.echo", "pool": pool, "items": [{"value": i} for i in range(n)], **spec},
    }


def _cleanup(redis_client, uid: str, pool: str) -> None:
    redis_client.delete(*names.task_keys(uid), *names.queue_lists(pool), *names.queue_lists(pool, items=True))
    redis_client.delete(names.pool_items(pool), names.busy(pool))
    for zset in (*names.ZSETS, names.LANE_LEASES, names.LANE_SENDS, names.BATCH_WAKE):
        for member in redis_client.zrange(zset, 0, -1):
            if member.startswith(uid):
                redis_client.zrem(zset, member)


async def _start(aredis, celery, body) -> ledger.Dispatch:
    sent = await sending.send_first(redis=aredis, celery=celery, body=body, pools=test_pools.open_claims())
    assert sent is not None
    return sent


def _lane(redis_url, d: ledger.Dispatch, lane: int, seq: int, pod: str = "pod-a") -> lanestore.LaneStore:
    return lanestore.LaneStore(
        store.Store(store.connect(redis_url), pod=pod), dispatch=d, lane=lane, seq=seq, tag=""
    )


def _ok(index: int, attempts: int = 1) -> batchledger.Outcome:
    record = batch.ItemRecord(index=index, phase=batch.ItemPhase.SUCCEEDED, attempts=attempts, result=index)
    return batchledger.Outcome(index=index, code="s", record=record)


def _failed(index: int) -> batchledger.Outcome:
    error = {"type": "Boom", "message": "no"}
    record = batch.ItemRecord(index=index, phase=batch.ItemPhase.FAILED, attempts=1, error=error)
    return batchledger.Outcome(index=index, code="f", record=record)


def _counts(redis_client, uid: str) -> batch.Counts:
    return batch.counts(redis_client.hgetall(names.batch(uid)), redis_client.zcard(names.items_retry(uid)))


async def test_start_queues_lanes_once_and_tokens_are_claimed_once(aredis, celery, redis_client, redis_url):
    pool = f"b{uuid.uuid4().hex[:6]}"
    body = _body(5, pool=pool, parallelism=8)
    d = await _start(aredis, celery, body)
    uid = d.uid
    try:
        assert d.items == 5 and d.spec.items is None  # the items travel in Redis, not in messages
        assert redis_client.hlen(names.items_inputs(uid)) == 5
        lanes = redis_client.hgetall(names.lanes(uid))
        assert sorted(lanes) == ["1", "2", "3", "4", "5"]  # parallelism 8, but 5 items
        assert sum(redis_client.llen(k) for k in names.queue_lists(pool, items=True)) == 5
        assert not any(m.startswith(uid) for m in redis_client.zrange(names.LANE_SENDS, 0, -1))  # marked sent

        first = _lane(redis_url, d, 1, 0)
        assert first.claim(lease_seconds=30) == (True, True)
        assert _lane(redis_url, d, 1, 0).claim(lease_seconds=30) == (False, False)  # the same token again
        assert _lane(redis_url, d, 2, 7).claim(lease_seconds=30) == (False, False)  # a stale seq
        assert _lane(redis_url, d, 2, 0).claim(lease_seconds=30) == (True, False)
        loads = await workload.Workload(aredis).read([pool])
        # 2 lanes run on pod-a; 3 more items could start (5 lanes, 2 running).
        assert loads[pool].running == 2 and loads[pool].pods == {"pod-a": 2}
        assert loads[pool].items == 3
    finally:
        _cleanup(redis_client, uid, pool)


async def test_items_end_once_and_a_lost_lane_records_nothing(aredis, celery, redis_client, redis_url):
    pool = f"b{uuid.uuid4().hex[:6]}"
    d = await _start(aredis, celery, _body(10, pool=pool, parallelism=2))
    uid = d.uid
    try:
        a, b = _lane(redis_url, d, 1, 0), _lane(redis_url, d, 2, 0, pod="pod-b")
        assert a.claim(lease_seconds=30)[0] and b.claim(lease_seconds=30)[0]
        took_a = a.take(4, yield_to_tasks=True)
        took_b = b.take(4, yield_to_tasks=True)
        assert isinstance(took_a, list) and isinstance(took_b, list)
        assert [t.index for t in took_a] == [0, 1, 2, 3] and [t.index for t in took_b] == [4, 5, 6, 7]
        assert took_a[2].item == {"value": 2}
        # b reports first, then a: each item counted once.
        assert b.report([_ok(t.index) for t in took_b], lease_seconds=30) is not None
        assert a.report([_ok(t.index) for t in took_a], lease_seconds=30) is not None
        assert _counts(redis_client, uid).succeeded == 8

        # a stalls; the operator declares its lane lost while it holds items 8 and 9
        held = a.take(4, yield_to_tasks=False)
        assert isinstance(held, list) and [t.index for t in held] == [8, 9]
        redis_client.zadd(names.LANE_LEASES, {names.lane_member(uid, 1): time.time() - 1})
        await batches.Batches(redis=aredis, celery=celery, poison_crashes=3).lane_lost(
            names.lane_member(uid, 1), time.time()
        )
        assert a.report([_ok(8), _ok(9)], lease_seconds=30) is None  # too late: nothing recorded
        c = _counts(redis_client, uid)
        assert (c.succeeded, c.queued, c.running) == (8, 2, 0)
        records = {
            int(k): batch.ItemRecord.model_validate_json(v)
            for k, v in redis_client.hgetall(names.items_records(uid)).items()
        }
        assert records[8].crashes == 1 and records[8].attempts == 0  # a chunk's crash counts no attempt
        lane = batch.Lane.decode(redis_client.hget(names.lanes(uid), "1"))
        assert lane.state == batch.LaneState.QUEUED and lane.seq == 1  # queued again, a new token sent

        # The new token runs them; a retried item is taken alone.
        again = _lane(redis_url, d, 1, 1)
        assert again.claim(lease_seconds=30)[0]
        one = again.take(10, yield_to_tasks=False)
        assert isinstance(one, list) and len(one) == 1
        again.report([_ok(one[0].index)], lease_seconds=30)
        two = again.take(10, yield_to_tasks=False)
        assert isinstance(two, list) and len(two) == 1
        report = again.report([_ok(two[0].index)], lease_seconds=30)
        assert report is not None and report.ended == "Succeeded"
        assert report.counts.succeeded == 10 and report.counts.queued == 0
    finally:
        _cleanup(redis_client, uid, pool)


async def test_a_lane_that_held_one_item_counts_the_crash_as_an_attempt(
    aredis, celery, redis_client, redis_url
):
    pool = f"b{uuid.uuid4().hex[:6]}"
    d = await _start(aredis, celery, _body(1, pool=pool, retry={"maxRetries": 5, "backoffSeconds": 0}))
    uid = d.uid
    ops = batches.Batches(redis=aredis, celery=celery, poison_crashes=2)
    try:
        for seq, expect in ((0, batch.ItemPhase.RETRYING), (1, batch.ItemPhase.FAILED)):
            lane = _lane(redis_url, d, 1, seq)
            assert lane.claim(lease_seconds=30)[0]
            if seq:
                redis_client.zadd(names.items_retry(uid), {"0": 0})  # due now
            assert isinstance(lane.take(5, yield_to_tasks=False), list)
            redis_client.zadd(names.LANE_LEASES, {names.lane_member(uid, 1): time.time() - 1})
            await ops.lane_lost(names.lane_member(uid, 1), time.time())
            record = batch.ItemRecord.model_validate_json(redis_client.hget(names.items_records(uid), "0"))
            assert record.phase == expect and record.attempts == seq + 1 and record.crashes == seq + 1
        assert record.error is not None and record.error["type"] == "Poison"
        assert redis_client.hget(names.batch(uid), "ended") == "Failed"
    finally:
        _cleanup(redis_client, uid, pool)


async def test_a_lane_yields_to_a_waiting_task_of_its_priority_or_above(
    aredis, celery, redis_client, redis_url
):
    pool = f"b{uuid.uuid4().hex[:6]}"
    d = await _start(aredis, celery, _body(10, pool=pool, parallelism=1, priority=5))
    uid = d.uid
    try:
        lane = _lane(redis_url, d, 1, 0)
        assert lane.claim(lease_seconds=30)[0]
        lists = names.queue_lists(pool)  # most urgent first: priority 9 .. 0
        redis_client.lpush(lists[9], "a priority-0 task")
        assert isinstance(lane.take(1, yield_to_tasks=True), list)  # a lower priority: no yield
        lane.report([_ok(0)], lease_seconds=30)
        redis_client.lpush(lists[4], "a priority-5 task")
        assert lane.take(1, yield_to_tasks=True) == -2
        assert isinstance(lane.take(1, yield_to_tasks=False), list)  # a lane's first take never yields
    finally:
        _cleanup(redis_client, uid, pool)


async def test_max_failed_items_stops_the_rest_and_the_end_names_the_failures(
    aredis, celery, redis_client, redis_url
):
    pool = f"b{uuid.uuid4().hex[:6]}"
    d = await _start(aredis, celery, _body(50, pool=pool, parallelism=1, maxFailedItems=1))
    uid = d.uid
    try:
        lane = _lane(redis_url, d, 1, 0)
        assert lane.claim(lease_seconds=30)[0]
        taken = lane.take(4, yield_to_tasks=False)
        assert isinstance(taken, list)
        report = lane.report([_failed(0), _ok(1), _failed(2), _ok(3)], lease_seconds=30)
        assert report is not None and report.stop == "Failed" and report.ended == "Failed"
        assert (report.counts.failed, report.counts.succeeded, report.counts.cancelled) == (2, 2, 46)
        assert lane.take(4, yield_to_tasks=False) == -3  # nothing more starts
        assert redis_client.exists(names.cancel_flag(uid))  # running items elsewhere stop
        assert await batches.end(aredis, d, phase="Failed")
        event = [e for _, e in redis_client.xrange(names.events_stream(uid))][-1]
        assert '"MaxFailedItemsExceeded"' in event["event"] and '"failedIndexes":"0,2"' in event["event"]
        assert redis_client.hexists(names.DLQ, uid)
        assert not await batches.end(aredis, d, phase="Failed")  # once

        # A replay runs the failed items and the ones the stop left, not the succeeded ones.
        assert await batches.reset_failed(aredis, uid)
        c = _counts(redis_client, uid)
        assert (c.failed, c.succeeded, c.queued, c.cancelled) == (0, 2, 48, 0)
    finally:
        _cleanup(redis_client, uid, pool)
        redis_client.hdel(names.DLQ, uid)


async def test_cancel_ends_once_no_item_is_held(aredis, celery, redis_client, redis_url):
    pool = f"b{uuid.uuid4().hex[:6]}"
    d = await _start(aredis, celery, _body(20, pool=pool, parallelism=1))
    uid = d.uid
    try:
        lane = _lane(redis_url, d, 1, 0)
        assert lane.claim(lease_seconds=30)[0]
        taken = lane.take(3, yield_to_tasks=False)
        assert isinstance(taken, list)
        assert await batches.cancel(aredis, uid)
        assert not redis_client.exists(names.done(uid))  # items are held: not ended yet
        assert lane.take(3, yield_to_tasks=False) == -3
        back = [batchledger.Outcome(index=t.index, code="q", record=None) for t in taken]
        report = lane.report(back, lease_seconds=30)
        assert report is not None and report.ended == "Cancelled" and report.counts.cancelled == 20
    finally:
        _cleanup(redis_client, uid, pool)


async def test_forget_leaves_nothing_of_the_lanes(aredis, celery, redis_client, redis_url):
    pool = f"b{uuid.uuid4().hex[:6]}"
    d = await _start(aredis, celery, _body(5, pool=pool, parallelism=2))
    uid = d.uid
    try:
        lane = _lane(redis_url, d, 1, 0)
        assert lane.claim(lease_seconds=30)[0]
        await dispatch.forget(redis=aredis, uid=uid)
        assert not any(
            m.startswith(uid)
            for z in (names.LANE_LEASES, names.LANE_SENDS)
            for m in redis_client.zrange(z, 0, -1)
        )
        assert not redis_client.hexists(names.RUNNING, names.lane_member(uid, 1))
        assert not redis_client.hexists(names.pool_items(pool), uid)
        assert not redis_client.exists(names.batch(uid), names.items_inputs(uid), names.lanes(uid))
        assert lane.take(1, yield_to_tasks=False) == -1  # the running lane stops at its next take
        assert not _lane(redis_url, d, 2, 0).claim(lease_seconds=30)[0]
    finally:
        _cleanup(redis_client, uid, pool)
