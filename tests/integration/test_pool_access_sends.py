"""No first send of a task its pool does not admit, against a real Redis and Celery sender.

Covers: sending.send_first (the gateway's first send and the operator's) sends nothing,
takes no guard and publishes no event for a task whose pool refuses its namespace, nor
before the WorkerPools are listed, and sends an admitted one; the operator's
dispatch.refuse fails a refused task once (Failed, PoolNotAllowed, guard "refused"), no
second time, and not at all when a sender took the guard first.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import events, names, poolaccess
from longtask_operator import dispatch
from longtask_runtime import sending
from tests import lt


def _task(namespace: str, pool: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": "t", "uid": str(uuid.uuid4())},
        "spec": {"task": "demo.noop", "pool": pool},
    }


def _claims(pool: str) -> poolaccess.Claims:
    """`pool` held by a WorkerPool of namespace b that admits nobody else."""
    claims = poolaccess.Claims()
    claims.list_pools(
        [
            {
                "metadata": {"namespace": "b", "name": "wp", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"deployment": "d", "pool": pool},
            }
        ]
    )
    claims.list_namespaces([{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}])
    return claims


def _queued_keys(redis_client: Any, pool: str) -> list[str]:
    return list(redis_client.scan_iter(match=f"{names.queue(pool)}*"))


def test_a_first_send_sends_only_what_the_pool_admits(redis_url, redis_client):
    pool = f"p-{uuid.uuid4().hex[:8]}"
    claims = _claims(pool)
    refused, admitted = _task("a", pool), _task("b", pool)

    async def run() -> tuple[object, object, object]:
        client = aioredis.Redis.from_url(redis_url)
        celery = sending.celery_sender(redis_url)
        try:
            unlisted = await sending.send_first(
                redis=client, celery=celery, body=refused, pools=poolaccess.Claims()
            )
            first = await sending.send_first(redis=client, celery=celery, body=refused, pools=claims)
            second = await sending.send_first(redis=client, celery=celery, body=admitted, pools=claims)
            return unlisted, first, second
        finally:
            celery.close()
            await client.aclose()

    unlisted, first, second = asyncio.run(run())
    uid = refused["metadata"]["uid"]
    assert unlisted is None and first is None
    assert redis_client.get(names.dispatch_guard(uid)) is None, "left to the operator"
    assert lt.kinds(redis_client, uid) == [] and redis_client.get(names.current(uid)) is None
    assert second is not None
    assert redis_client.get(names.dispatch_guard(admitted["metadata"]["uid"])) == "sent"
    assert lt.kinds(redis_client, admitted["metadata"]["uid"]) == ["queued"]
    assert _queued_keys(redis_client, pool), "the admitted task's message is queued"


def test_the_operator_fails_a_refused_task_once_and_never_one_already_sent(redis_url, redis_client):
    pool = f"p-{uuid.uuid4().hex[:8]}"
    verdict = _claims(pool).verdict(namespace="a", pool=pool)
    task, taken = _task("a", pool), _task("a", pool)
    redis_client.set(names.dispatch_guard(taken["metadata"]["uid"]), sending.SENT)

    async def run() -> list[bool]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return [
                await dispatch.refuse(redis=client, body=task, verdict=verdict),
                await dispatch.refuse(redis=client, body=task, verdict=verdict),
                await dispatch.refuse(redis=client, body=taken, verdict=verdict),
            ]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [True, False, False]
    uid = task["metadata"]["uid"]
    [failed] = lt.stream(redis_client, uid)
    assert failed.kind is events.Kind.FAILED and failed.error is not None
    assert failed.error["type"] == "PoolNotAllowed" and failed.error["message"] == verdict.message
    assert redis_client.get(names.dispatch_guard(uid)) == sending.REFUSED
    assert redis_client.get(names.done(uid)) is not None
    assert lt.stream(redis_client, taken["metadata"]["uid"]) == [], "a sender had it: not failed"
    assert not _queued_keys(redis_client, pool), "nothing was sent"
