"""A forgotten (deleted) task against every send that races its forget, on a real Redis.

Covers:
- the first send (the gateway's, or the operator's), a retry's send and the re-send of an
  unclaimed attempt, each made after the forget (as a sender that read the task before it
  would): each writes nothing, sends no Celery message, and says so;
- a send that is not forgotten writes its current attempt and event stream with an expiry;
- a forget that lands after the current attempt was written: the message already sent is
  refused by the claim, and so is a current attempt written late by an older sender;
- an attempt running when its task is forgotten: it is told to cancel, and its end
  records nothing (no retry scheduled, no current attempt) and releases its lease;
- the operator's forget after a LIST: a task Redis held before the LIST began and the LIST
  did not show is forgotten; one it showed, one of another namespace, and one sent after
  the LIST began are left alone; no retry is sent before the watch has listed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from longtask_contracts import events, ledger, names, poolaccess
from longtask_operator import dispatch, maintenance, taskwatch
from longtask_runtime import sending
from longtask_worker import store


def _open() -> poolaccess.Claims:
    """Listed, and no WorkerPool claims these tests' pools: open to every namespace."""
    claims = poolaccess.Claims()
    claims.list_pools([])
    return claims


_OPEN = _open()


def _body(uid: str, pool: str, namespace: str = "ns") -> dict:
    return {
        "metadata": {"namespace": namespace, "name": f"t-{uid[:8]}", "uid": uid},
        "spec": {"task": "demo.noop", "pool": pool},
    }


def _queued(redis_client, pool: str) -> int:
    return sum(redis_client.llen(key) for key in names.queue_lists(pool))


@pytest.fixture
async def aredis(redis_url) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def celery(redis_url):
    app = sending.celery_sender(redis_url)
    yield app
    app.close()


def _senders(uid: str, pool: str):
    """Each send that can race a delete, as a sender that read the task before the forget."""
    first = sending.first_attempt(_body(uid, pool), now=time.time())
    return {
        "first send": lambda r, c: sending.send_first(redis=r, celery=c, body=_body(uid, pool), pools=_OPEN),
        "retry due": lambda r, c: dispatch.send(redis=r, celery=c, dispatch=first.next()),
        "unclaimed re-send": lambda r, c: dispatch.send(redis=r, celery=c, dispatch=first),
    }


@pytest.mark.parametrize("sender", ["first send", "retry due", "unclaimed re-send"])
async def test_a_send_after_the_forget_writes_and_sends_nothing(sender, aredis, celery, redis_client):
    uid, pool = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}"
    await dispatch.forget(redis=aredis, uid=uid)
    sent = await _senders(uid, pool)[sender](aredis, celery)
    assert not sent
    assert _queued(redis_client, pool) == 0, "no Celery message"
    assert not redis_client.exists(names.current(uid), names.events_stream(uid))
    assert redis_client.zscore(names.DEADLINES, uid) is None
    assert 0 < redis_client.ttl(names.tombstone(uid)) <= ledger.TOMBSTONE_SECONDS


@pytest.mark.parametrize("sender", ["first send", "retry due", "unclaimed re-send"])
async def test_a_send_of_a_live_task_leaves_keys_that_expire(sender, aredis, celery, redis_client):
    uid, pool = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}"
    try:
        assert await _senders(uid, pool)[sender](aredis, celery)
        assert _queued(redis_client, pool) == 1
        for key in (names.current(uid), names.events_stream(uid)):
            assert redis_client.ttl(key) > ledger.KEY_TTL_SECONDS, key
    finally:
        await dispatch.forget(redis=aredis, uid=uid)
        redis_client.delete(*names.queue_lists(pool))


def _worker(redis_url) -> store.Store:
    return store.Store(store.connect(redis_url), pod="test-pod")


async def test_a_forget_after_the_send_leaves_a_message_the_claim_refuses(
    aredis, celery, redis_client, redis_url
):
    uid, pool = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}"
    worker = _worker(redis_url)
    try:
        sent = await sending.send_first(redis=aredis, celery=celery, body=_body(uid, pool), pools=_OPEN)
        assert sent is not None
        await dispatch.forget(redis=aredis, uid=uid)
        assert not worker.claim(sent, worker="w", lease_seconds=30)
        redis_client.set(names.current(uid), sent.model_dump_json())  # an older sender, late
        assert not worker.claim(sent, worker="w", lease_seconds=30), "the tombstone refuses it"
        assert not redis_client.exists(names.claim(uid), names.started(uid))
    finally:
        redis_client.delete(*names.task_keys(uid), *names.queue_lists(pool))
        worker.redis.close()


async def test_an_attempt_running_when_its_task_is_forgotten_records_nothing(
    aredis, celery, redis_client, redis_url
):
    uid, pool = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}"
    worker = _worker(redis_url)
    try:
        sent = await sending.send_first(redis=aredis, celery=celery, body=_body(uid, pool), pools=_OPEN)
        assert sent is not None and worker.claim(sent, worker="w", lease_seconds=30)
        assert not worker.cancel_requested(uid)
        await dispatch.forget(redis=aredis, uid=uid)
        redis_client.delete(names.cancel_flag(uid))  # the tombstone alone tells it to stop
        assert worker.cancel_requested(uid)
        worker.publish(sent.event(events.Kind.PROGRESS, progress=50))  # its stream is back
        assert worker.renew(sent, worker="w", lease_seconds=30)  # takes its vanished lease back
        event = sent.event(events.Kind.RETRYING, message="failed; retrying")
        assert not worker.finish(dispatch=sent, worker="w", event=event, retry_at=time.time() + 60)
        assert not redis_client.exists(names.current(uid), names.claim(uid))
        assert redis_client.zscore(names.SCHEDULE, uid) is None
        assert redis_client.zscore(names.LEASES, uid) is None
        assert not redis_client.hexists(names.RUNNING, uid)
        assert redis_client.ttl(names.events_stream(uid)) > 0, "what it wrote since expires"
    finally:
        redis_client.delete(*names.task_keys(uid), *names.queue_lists(pool))
        worker.redis.close()


async def test_after_a_list_the_operator_forgets_what_it_did_not_show(aredis, celery, redis_client):
    pool = f"p-{uuid.uuid4().hex[:8]}"
    uids = {what: str(uuid.uuid4()) for what in ("listed", "gone", "elsewhere", "late")}
    namespaces = {"elsewhere": "other"}
    try:
        for what in ("listed", "gone", "elsewhere"):
            body = _body(uids[what], pool, namespace=namespaces.get(what, "ns"))
            assert await sending.send_first(redis=aredis, celery=celery, body=body, pools=_OPEN)
        watch = taskwatch.TaskWatch(
            redis=aredis,
            celery=celery,
            kube=None,  # type: ignore[arg-type]
            pools=_OPEN,
            namespaces=["ns"],
        )
        before = await watch._queued_or_running()
        # the LIST goes on; meanwhile the gateway creates and sends a task the LIST misses
        assert await sending.send_first(
            redis=aredis, celery=celery, body=_body(uids["late"], pool), pools=_OPEN
        )
        await watch._forget_deleted("ns", before=before, seen={uids["listed"]})
        assert redis_client.exists(names.tombstone(uids["gone"]))
        assert not redis_client.exists(names.current(uids["gone"]))
        for what in ("listed", "elsewhere", "late"):
            assert redis_client.exists(names.current(uids[what])), what
            assert not redis_client.exists(names.tombstone(uids[what])), what
    finally:
        for uid in uids.values():
            await dispatch.forget(redis=aredis, uid=uid)
        redis_client.delete(*names.queue_lists(pool))


async def test_no_retry_is_sent_before_the_watch_has_listed(aredis, celery, redis_client):
    """A restarted operator sends a retry that came due while it was down only once its
    LIST has forgotten what was deleted meanwhile."""
    uid, pool = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}"
    listed = False
    upkeep = maintenance.Maintenance(
        redis=aredis,
        celery=celery,
        kube=None,
        tick=1,
        poison_crashes=3,
        listed=lambda: listed,  # type: ignore[arg-type]
    )
    first = sending.first_attempt(_body(uid, pool), now=time.time())
    pipe = aredis.pipeline(transaction=True)
    ledger.queue_retry(pipe, first.next(), at=time.time() - 1)
    await pipe.execute()
    try:
        await upkeep._retry_due(uid)
        assert _queued(redis_client, pool) == 0 and redis_client.zscore(names.SCHEDULE, uid) is not None
        listed = True
        await upkeep._retry_due(uid)
        assert _queued(redis_client, pool) == 1 and redis_client.zscore(names.SCHEDULE, uid) is None
    finally:
        await dispatch.forget(redis=aredis, uid=uid)
        redis_client.delete(*names.queue_lists(pool))
