"""A deleted LongTask never starts, whichever send races its delete, and what holds while
the operator is down (docs/guarantees.md, "Cancellation and deletion").

Covers:
- a queued LongTask is deleted and the operator forgets it; then a send that was in flight
  lands, as a sender that read the task before the forget would make it: the gateway's
  first send, the retry scheduler's send, the re-send of an unclaimed attempt. A worker
  then comes up for the pool: nothing starts (neither the message queued before the delete
  nor the late one), and every key the late send left expires;
- the operator paused (SIGSTOP) while a queued task and a running-to-be task are deleted,
  a worker coming up meanwhile and starting the second; the paused operator is then
  replaced (as its liveness probe would) by one whose sweep never comes round: at its
  first LIST it forgets both, the started attempt stops, and the queued one never starts
  on a worker that comes up after that.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as aioredis

from longtask_contracts import ledger, names
from longtask_operator import dispatch
from longtask_runtime import sending
from tests import helpers, lt, pools
from tests.drills.conftest import DRILL_ENV

pytestmark = pytest.mark.cluster


def _handled(worker, uid: str, attempt: int = 1) -> bool:
    """The worker's Celery task returned for that attempt's message (it ran, or skipped it)."""
    return f"longtask.run[{uid}.{attempt}] succeeded" in worker.log_tail(2000)


async def _late_send(redis_url: str, sender: str, body: dict, current: ledger.Dispatch) -> object:
    redis = aioredis.Redis.from_url(redis_url)
    celery = sending.celery_sender(redis_url)
    try:
        if sender == "first send":  # the gateway's, held up between the create and the send
            return await sending.send_first(redis=redis, celery=celery, body=body)
        if sender == "retry due":  # maintenance._retry_due read the task, then the delete
            return await dispatch.send(redis=redis, celery=celery, dispatch=current.next())
        # maintenance._resend_unclaimed read the task, then the delete
        return await dispatch.send(redis=redis, celery=celery, dispatch=current)
    finally:
        celery.close()
        await redis.aclose()


@pytest.mark.parametrize("sender", ["first send", "retry due", "unclaimed re-send"])
def test_a_send_racing_the_delete_never_starts(sender, platform, cluster, kubectl, namespace, redis_client):
    pool = pools.unique_pool()
    uid = lt.create(kubectl, namespace, "raced", task="demo.noop", pool=pool)
    lt.wait_phase(kubectl, namespace, "raced", "Queued")
    body = lt.get(kubectl, namespace, "raced")
    current = ledger.Dispatch.model_validate_json(redis_client.get(names.current(uid)))
    kubectl("delete", "-n", namespace, "lt/raced", "--wait=true")
    helpers.poll(
        lambda: not redis_client.exists(names.current(uid)), timeout=30, what="the operator to forget it"
    )
    asyncio.run(_late_send(cluster.redis_url, sender, body, current))

    worker = platform.start_worker(pool=pool, concurrency=1)
    try:
        helpers.poll(lambda: _handled(worker, uid), timeout=60, what="the worker to take the queued message")
    finally:
        platform.stop_child(worker)
    assert not redis_client.exists(names.started(uid)), "an attempt of the deleted task started"
    assert not redis_client.exists(names.current(uid))
    leaked = [key for key in names.task_keys(uid) if redis_client.ttl(key) == -1]
    assert not leaked, f"keys that never expire: {leaked}"


def test_a_task_deleted_while_the_operator_is_down(platform, cluster, kubectl, namespace, redis_client):
    running_pool, queued_pool = pools.unique_pool(), pools.unique_pool()
    running = lt.create(
        kubectl,
        namespace,
        "runs",
        task="demo.sleep",
        pool=running_pool,
        params={"seconds": 600, "steps": 1200},
    )
    queued = lt.create(kubectl, namespace, "waits", task="demo.noop", pool=queued_pool)
    lt.wait_phase(kubectl, namespace, "runs", "Queued")
    lt.wait_phase(kubectl, namespace, "waits", "Queued")
    operator = cluster.child("operator")
    os.kill(operator.pid, signal.SIGSTOP)
    workers = []
    try:
        kubectl("delete", "-n", namespace, "lt/runs", "lt/waits", "--wait=true")
        workers.append(platform.start_worker(pool=running_pool, concurrency=1, extra_env=DRILL_ENV))
        # While no operator runs, a worker may start a deleted task (docs/guarantees.md).
        helpers.poll(
            lambda: redis_client.exists(names.claim(running)), timeout=60, what="the attempt to start"
        )
    finally:
        platform.kill_operator()  # a stopped process is killed too
        # Its sweep never comes round during this drill: only the LIST can find them.
        platform.start_operator(extra_env={"LONGTASK_SWEEP_SECONDS": "3600"})
    try:
        helpers.poll(
            lambda: not redis_client.exists(names.current(running), names.current(queued)),
            timeout=60,
            what="the restarted operator to forget both at its first LIST",
        )
        helpers.poll(
            lambda: (
                not redis_client.exists(names.claim(running))
                and not redis_client.hexists(names.RUNNING, running)
            ),
            timeout=60,
            what="the started attempt to stop",
        )
        workers.append(platform.start_worker(pool=queued_pool, concurrency=1))
        helpers.poll(lambda: _handled(workers[-1], queued), timeout=60, what="the worker to take its message")
        assert not redis_client.exists(names.started(queued)), "the queued attempt started after the forget"
    finally:
        for worker in workers:
            platform.stop_child(worker)
        platform.kill_operator()
        platform.start_operator()
