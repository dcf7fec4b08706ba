"""The autoscaler's view of a pool's work, read from a real Redis.

Covers: queued counts every priority list kombu creates (messages really sent by Celery
with every LongTask priority); fetched counts the pool's unacknowledged messages and no
other pool's (even one whose name ends the same way); running counts attempts whose claim
is alive, per pod, and ignores an entry whose worker died (claim gone).
"""

from __future__ import annotations

import json
import uuid

import pytest

from longtask_contracts import names
from longtask_operator import workload
from longtask_runtime import redisopts, sending

pytestmark = pytest.mark.cluster


async def test_workload_counts_every_list_unacked_and_live_claims(cluster, redis_client):
    pool, other = f"w{uuid.uuid4().hex[:6]}", None
    other = f"x{pool}"  # "longtask.x<pool>" ends like "longtask.<pool>" but is another queue
    celery = sending.celery_sender(cluster.redis_url)
    for priority in range(10):
        celery.send_task(
            names.RUN_TASK, args=[{}], queue=names.queue(pool), priority=names.transport_priority(priority)
        )
    celery.send_task(names.RUN_TASK, args=[{}], queue=names.queue(other))
    assert sum(redis_client.exists(key) for key in names.queue_lists(pool)) == 10, "one list per priority"

    tags = [f"tag-{uuid.uuid4().hex}" for _ in range(3)]
    redis_client.hset(names.KOMBU_UNACKED, tags[0], json.dumps([{"body": "x"}, "", names.queue(pool)]))
    redis_client.hset(names.KOMBU_UNACKED, tags[1], json.dumps([{"body": "y"}, "", names.queue(pool)]))
    redis_client.hset(names.KOMBU_UNACKED, tags[2], json.dumps([{"body": "z"}, "", names.queue(other)]))
    live, dead, elsewhere = (uuid.uuid4().hex for _ in range(3))
    redis_client.hset(
        names.RUNNING, mapping={live: f"{pool} pod-a", dead: f"{pool} pod-b", elsewhere: f"{other} pod-c"}
    )
    redis_client.set(names.claim(live), "1:w", px=30_000)
    redis_client.set(names.claim(elsewhere), "1:w", px=30_000)

    client = redisopts.async_client(cluster.redis_url)
    try:
        loads = await workload.Workload(client).read([pool, other])
    finally:
        await client.aclose()
        redis_client.delete(
            *names.queue_lists(pool), *names.queue_lists(other), names.claim(live), names.claim(elsewhere)
        )
        redis_client.hdel(names.KOMBU_UNACKED, *tags)
        redis_client.hdel(names.RUNNING, live, dead, elsewhere)
    assert loads[pool] == workload.Load(queued=10, fetched=2, running=1, pods={"pod-a": 1})
    assert loads[pool].in_flight == 2
    assert loads[other] == workload.Load(queued=1, fetched=1, running=1, pods={"pod-c": 1})
