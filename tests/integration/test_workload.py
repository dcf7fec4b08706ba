"""The autoscaler's view of a pool's work, read from a real Redis, and the records that keep
it free of dead workers' messages.

Messages are really sent (the operator's sending code) and really fetched by kombu (its
`unacked` entry written as a worker's fetch writes it) in a process that then dies at once,
as a SIGKILLed worker does; claims, renewals and finishes are the worker's own scripts;
ends of dead attempts are the operator's maintenance steps.

Covers:
- queued counts every priority list kombu creates (messages sent with every LongTask
  priority), and no other pool's (even one whose name ends the same way);
- a fetched message counts as fetched for the claim timeout and then no longer; claimed,
  it counts as running on its pod; finished, it counts nowhere and kombu's `unacked` entry
  of it is gone with the finish;
- a worker that dies mid-task: once the operator ends the attempt (lease expired), nothing
  of it counts (running, busy pod) and kombu's `unacked` hash holds no entry of it;
- a worker that dies between fetch and claim: its message stops counting after the claim
  timeout; the operator sends the attempt again and drops the dead copy, told which attempt
  it holds by the worker's record of it, not by its body; the new copy runs and leaves
  nothing behind;
- the depth read reads no message body (no HVALS or HGETALL of kombu's hash) and costs a
  fixed number of commands per pool, whatever is in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import pytest

from longtask_contracts import events, ledger, models, names
from longtask_operator import maintenance, workload
from longtask_runtime import redisopts, sending
from longtask_worker import app as worker_app
from longtask_worker import settings, store
from tests import fakes

CLAIM_TIMEOUT = 15.0


def _dispatch(pool: str, *, attempt: int = 1, priority: int = 0) -> ledger.Dispatch:
    return ledger.Dispatch(
        namespace="ns",
        name=f"t-{uuid.uuid4().hex[:6]}",
        uid=str(uuid.uuid4()),
        spec=models.LongTaskSpec(task="demo.noop", pool=pool, priority=priority),
        attempt=attempt,
        deadline=time.time() + 600,
    )


def _fetch_then_die(redis_url: str, pool: str, pod: str) -> str:
    """A worker's main process (the worker's own Celery app and signal handlers) that takes
    one message of `pool` from its queue (kombu writes the `unacked` entry), receives it
    (Celery's task_received), and dies at once: nothing hands the message back. Returns
    the message's delivery tag."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def work() -> None:
        from celery import signals
        from celery.worker.request import Request

        cfg = settings.WorkerSettings(REDIS_URL=redis_url, pool=pool, pod_name=pod)
        app = worker_app.create_app(cfg)
        message = app.connection_for_read().default_channel.basic_get(names.queue(pool), no_ack=False)
        signals.task_received.send(sender=None, request=Request(message, app=app))
        send.send(message.delivery_tag)
        os._exit(0)

    process = context.Process(target=work)
    process.start()
    assert receive.poll(30), "the fetching process failed"
    tag = receive.recv()
    process.join()
    return str(tag)


@pytest.fixture
async def aredis(redis_url):
    client = redisopts.async_client(redis_url)
    yield client
    await client.aclose()


async def _read(aredis, *pools: str, now: float | None = None) -> dict[str, workload.Load]:
    return await workload.Workload(aredis, claim_timeout=CLAIM_TIMEOUT).read(list(pools), now=now)


def _kombu_holds(redis_client, tag: str) -> bool:
    return bool(
        redis_client.hexists(names.KOMBU_UNACKED, tag) or redis_client.zscore(names.KOMBU_UNACKED_INDEX, tag)
    )


def _cleanup(redis_client, *pools: str) -> None:
    for pool in pools:
        redis_client.delete(*names.queue_lists(pool), names.fetched(pool), names.busy(pool))


async def test_queued_counts_every_priority_list_of_its_own_pool(redis_url, redis_client, aredis):
    pool = f"w{uuid.uuid4().hex[:6]}"
    other = f"x{pool}"  # "longtask.x<pool>" ends like "longtask.<pool>" but is another queue
    celery = sending.celery_sender(redis_url)
    try:
        for priority in range(10):
            await sending.send(redis=aredis, celery=celery, dispatch=_dispatch(pool, priority=priority))
        await sending.send(redis=aredis, celery=celery, dispatch=_dispatch(other))
        assert sum(redis_client.exists(key) for key in names.queue_lists(pool)) == 10, "one list per priority"
        loads = await _read(aredis, pool, other)
    finally:
        _cleanup(redis_client, pool, other)
    assert loads[pool] == workload.Load(queued=10)
    assert loads[other] == workload.Load(queued=1)


async def test_fetched_then_claimed_then_finished(redis_url, redis_client, aredis):
    pool = f"w{uuid.uuid4().hex[:6]}"
    celery = sending.celery_sender(redis_url)
    worker = store.Store(store.connect(redis_url), pod="pod-a")
    d = _dispatch(pool)
    try:
        await sending.send(redis=aredis, celery=celery, dispatch=d)
        tag = _fetch_then_die(redis_url, pool, "pod-a")
        fetched_at = redis_client.zscore(names.fetched(pool), tag)
        assert (await _read(aredis, pool))[pool] == workload.Load(fetched=1)
        assert (await _read(aredis, pool, now=fetched_at + CLAIM_TIMEOUT + 1))[pool] == workload.Load(), (
            "not claimed within the claim timeout: no longer counted"
        )

        assert worker.claim(d, worker="w1", lease_seconds=30, tag=tag)
        loads = await _read(aredis, pool)
        assert loads[pool] == workload.Load(running=1, pods={"pod-a": 1}) and loads[pool].in_flight == 1
        assert worker.renew(d, worker="w1", lease_seconds=30, tag=tag)
        assert (await _read(aredis, pool))[pool] == loads[pool], "a renewal counts nothing twice"

        end = d.event(events.Kind.SUCCEEDED, progress=100, worker="w1")
        assert worker.finish(dispatch=d, worker="w1", event=end, tag=tag)
        assert (await _read(aredis, pool))[pool] == workload.Load()
        assert not _kombu_holds(redis_client, tag), "the finish dropped kombu's entry of the message"
        assert not redis_client.hexists(names.DELIVERIES, tag) and not redis_client.hexists(
            names.RUNNING, d.uid
        )
    finally:
        _cleanup(redis_client, pool)
        redis_client.delete(*names.task_keys(d.uid))
        worker.redis.close()


async def test_a_worker_dead_mid_task_counts_nowhere_once_its_attempt_ended(redis_url, redis_client, aredis):
    pool = f"w{uuid.uuid4().hex[:6]}"
    celery = sending.celery_sender(redis_url)
    worker = store.Store(store.connect(redis_url), pod="pod-dead")
    ops = maintenance.Maintenance(
        redis=aredis, celery=celery, kube=fakes.RecordingKube(), tick=1.0, poison_crashes=3
    )
    d = _dispatch(pool)
    try:
        await sending.send(redis=aredis, celery=celery, dispatch=d)
        tag = _fetch_then_die(redis_url, pool, "pod-dead")
        assert worker.claim(d, worker="w1", lease_seconds=30, tag=tag)
        assert (await _read(aredis, pool))[pool].pods == {"pod-dead": 1}

        # The worker was SIGKILLed: nothing renews the lease; it runs out.
        redis_client.delete(names.claim(d.uid))
        await ops.once(time.time() + 31)  # the fetch long ago looked at too: left to the lease
        await ops.once(time.time() + 32)
        status = [events.TaskEvent.decode(f).kind for _, f in redis_client.xrange(names.events_stream(d.uid))]
        assert status[-1] is events.Kind.RETRYING, "the attempt ended as a crash, to be retried"
        assert (await _read(aredis, pool))[pool] == workload.Load()
        assert not _kombu_holds(redis_client, tag), "kombu's unacked hash holds no entry of the dead attempt"
        assert not redis_client.hexists(names.DELIVERIES, tag) and not redis_client.hexists(
            names.RUNNING, d.uid
        )
    finally:
        _cleanup(redis_client, pool)
        redis_client.delete(*names.task_keys(d.uid))
        redis_client.zrem(names.SCHEDULE, d.uid)
        redis_client.zrem(names.DEADLINES, d.uid)
        worker.redis.close()


async def test_a_worker_dead_before_its_claim(redis_url, redis_client, aredis):
    pool = f"w{uuid.uuid4().hex[:6]}"
    celery = sending.celery_sender(redis_url)
    ops = maintenance.Maintenance(
        redis=aredis, celery=celery, kube=fakes.RecordingKube(), tick=1.0, poison_crashes=3
    )
    replacement = store.Store(store.connect(redis_url), pod="pod-new")
    d = _dispatch(pool)
    try:
        await sending.send(redis=aredis, celery=celery, dispatch=d)
        dead = _fetch_then_die(redis_url, pool, "pod-dead")
        redis_client.hset(names.KOMBU_UNACKED, dead, "not a message: read the worker's record")
        later = time.time() + CLAIM_TIMEOUT + 1
        assert (await _read(aredis, pool, now=later))[pool] == workload.Load()
        await ops.once(later)
        assert not _kombu_holds(redis_client, dead) and not redis_client.hexists(names.DELIVERIES, dead)
        assert (await _read(aredis, pool))[pool] == workload.Load(queued=1), "sent again"

        tag = _fetch_then_die(redis_url, pool, "pod-new")
        assert replacement.claim(d, worker="w2", lease_seconds=30, tag=tag)
        end = d.event(events.Kind.SUCCEEDED, progress=100, worker="w2")
        assert replacement.finish(dispatch=d, worker="w2", event=end, tag=tag)
        assert (await _read(aredis, pool))[pool] == workload.Load()
        assert not _kombu_holds(redis_client, tag)
    finally:
        _cleanup(redis_client, pool)
        redis_client.delete(*names.task_keys(d.uid))
        redis_client.zrem(names.DEADLINES, d.uid)
        replacement.redis.close()


async def test_the_depth_read_reads_no_message_body(redis_url, redis_client, aredis):
    pool = f"w{uuid.uuid4().hex[:6]}"
    others = [f"{pool}-{i}" for i in range(3)]
    big = "x" * 100 * 1024
    tags = [f"tag-{uuid.uuid4().hex}" for _ in range(50)]
    redis_client.hset(
        names.KOMBU_UNACKED, mapping={t: f'[{{"body": "{big}"}}, "", "{names.queue(pool)}"]' for t in tags}
    )
    before = redis_client.info("commandstats")
    try:
        await _read(aredis, pool, *others)
    finally:
        redis_client.hdel(names.KOMBU_UNACKED, *tags)
    after = redis_client.info("commandstats")

    def calls(command: str) -> int:
        return int(after.get(f"cmdstat_{command}", {}).get("calls", 0)) - int(
            before.get(f"cmdstat_{command}", {}).get("calls", 0)
        )

    assert calls("hvals") == 0 and calls("eval") == calls("evalsha") == 0
    assert calls("llen") == 10 * 4 and calls("zcount") == 4
