"""The operator's status stream consumer against a real Redis.

Covers: a new operator under another consumer name adopts every entry its predecessor read
but never acknowledged (a replaced pod loses nothing), and reads them as its own backlog;
creating the consumer group twice is harmless. With a recording stand-in for the
apiserver (fakes.RecordingKube): a task that queues, runs and succeeds within the coalescing interval costs
exactly one status patch, written as soon as its end is read, its entries acknowledged
only after it; an unfinished task's first write waits the interval; Kubernetes Events only
for Retrying, Failed (dead-lettered too) and Cancelled, none for a success; a task met
first with its first Queued and never acknowledged before costs no GET and no Redis
command of its own (one pipeline per page), even when workers outran the sync; a Queued
sent again after the task's entries were acknowledged (its `synced` mark is set, also by
the sync itself) costs one; an entry whose GET failed is folded again, not lost.

Stuck tasks and taken-over entries (issue 18): an entry taken over from another consumer
after the sync had read past it (a failed read makes it re-read its backlog) is folded,
acknowledged, and the stream is trimmed past it (also without a failure: trimming finds
it); a task whose GET keeps failing holds back
no other task's status, and its entries are acknowledged with its held record, written once
it can be read; a task whose status writes keep failing keeps no entry pending for long
(its folded state is held in Redis instead), and an operator started afterwards writes
that state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from longtask_contracts import events, names
from longtask_operator import statusstream, statussync
from longtask_runtime import redisopts
from tests import fakes

K = events.Kind
INTERVAL = 1.0


@dataclass
class Running:
    kube: fakes.RecordingKube
    stream: str
    add: Callable[..., None]  # add(name, kind, **fields): one event of task `name`
    sync: statussync.StatusSync
    uids: dict[str, str]
    exists_calls: list[Any]  # EXISTS sent one by one (a pipeline's are not counted)


@pytest.fixture
async def sync(redis_url, redis_client, monkeypatch) -> AsyncIterator[Running]:
    """A StatusSync consuming a stream of its own, run as the operator runs it."""
    stream = f"{names.STATUS_STREAM}:test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(names, "STATUS_STREAM", stream)
    monkeypatch.setattr(names, "STATUS_HELD", f"{stream}:held")
    r = redisopts.async_client(redis_url)
    kube = fakes.RecordingKube()
    exists_calls: list[Any] = []

    async def exists(*keys: str) -> int:  # a round trip per task: what a burst must not cost
        exists_calls.append(keys)
        return 0

    monkeypatch.setattr(r, "exists", exists)
    uids: dict[str, str] = {}

    def add(name: str, kind: events.Kind, **fields: Any) -> None:
        uid = uids.setdefault(name, uuid.uuid4().hex)
        kube.uids[name] = uid
        event = events.TaskEvent(kind=kind, namespace="ns", name=name, uid=uid, **fields)
        redis_client.xadd(stream, event.encode())

    s = statussync.StatusSync(redis=r, kube=kube, consumer="op", interval=INTERVAL)  # type: ignore[arg-type]
    await s.stream.ensure_group()  # before the test reads the group's pending entries
    runner = asyncio.ensure_future(s.run())
    try:
        yield Running(kube=kube, stream=stream, add=add, sync=s, uids=uids, exists_calls=exists_calls)
    finally:
        runner.cancel()
        redis_client.delete(stream, f"{stream}:held")
        # Bounded: once, out of many runs, this teardown hung (a redis-py asyncio client
        # cancelled mid-command, likely); a stuck teardown must not stall the suite.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(runner, return_exceptions=True), 10)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(r.aclose(), 10)


async def _until(check: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _pending(redis_client, stream: str) -> int:
    return int(redis_client.xpending(stream, names.STATUS_GROUP)["pending"])


async def test_orphaned_entries_are_adopted(redis_url, redis_client, monkeypatch):
    stream = f"{names.STATUS_STREAM}:test-{uuid.uuid4().hex[:8]}"
    r = redisopts.async_client(redis_url)
    stream_reader = statusstream.StatusStream(redis=r, consumer="replacement")
    try:
        for _ in range(3):
            redis_client.xadd(stream, {"event": "{}"})
        redis_client.xgroup_create(stream, names.STATUS_GROUP, id="0")
        redis_client.xreadgroup(names.STATUS_GROUP, "gone-pod", {stream: ">"})  # read, never acked
        monkeypatch.setattr(names, "STATUS_STREAM", stream)
        await stream_reader.ensure_group()  # exists already: no error
        await stream_reader.adopt_orphans()
        pending = redis_client.xpending(stream, names.STATUS_GROUP)
        assert pending["pending"] == 3
        assert [(c["name"], c["pending"]) for c in pending["consumers"]] == [("replacement", 3)]
        backlog = await r.xreadgroup(names.STATUS_GROUP, "replacement", {stream: "0"})
        assert len(backlog[0][1]) == 3
    finally:
        redis_client.delete(stream)
        await r.aclose()


async def test_a_short_task_costs_one_status_patch_written_when_it_ends(sync, redis_client):
    sync.sync.interval = 600.0  # no write in this test is due to the interval
    sync.add("running", K.QUEUED, attempt=1)
    sync.add("running", K.STARTED, attempt=1, worker="w")
    sync.add("short", K.QUEUED, attempt=1)
    sync.add("short", K.STARTED, attempt=1, worker="w")
    sync.add("short", K.PROGRESS, attempt=1, progress=50)
    sync.add("short", K.SUCCEEDED, attempt=1, progress=100)
    # Every entry read; the finished task written at once, in one patch, its entries then
    # acknowledged; the running one waits its interval, unacknowledged.
    await _until(lambda: bool(sync.kube.patches), within=10, what="the status patch")
    await _until(
        lambda: _pending(redis_client, sync.stream) == 2, within=10, what="the short task's entries acked"
    )
    assert [(name, status["phase"]) for name, status in sync.kube.patches] == [("short", "Succeeded")]
    assert sync.kube.posted == [] and sync.kube.gets == 0 and sync.exists_calls == []


async def test_a_first_write_waits_the_interval_unless_the_task_ended(sync, redis_client):
    began = time.monotonic()
    sync.add("running", K.QUEUED, attempt=1)
    sync.add("running", K.STARTED, attempt=1, worker="w")
    # Read, folded, not yet written: nothing is acknowledged before the patch that covers it.
    await _until(
        lambda: not sync.kube.patches and _pending(redis_client, sync.stream) == 2,
        within=5,
        what="the entries read and none written",
    )
    await _until(lambda: bool(sync.kube.patches), within=5, what="the status patch")
    assert time.monotonic() - began >= INTERVAL * 0.9
    await _until(lambda: _pending(redis_client, sync.stream) == 0, within=5, what="the entries acked")
    assert [(name, status["phase"]) for name, status in sync.kube.patches] == [("running", "Running")]


async def test_events_only_for_retries_failures_and_cancellations(sync, redis_client):
    sync.add("fine", K.QUEUED, attempt=1)
    sync.add("unlucky", K.QUEUED, attempt=1)
    sync.add("stopped", K.QUEUED, attempt=1)
    sync.add("fine", K.STARTED, attempt=1, worker="w")
    sync.add("unlucky", K.STARTED, attempt=1, worker="w")
    sync.add("fine", K.SUCCEEDED, attempt=1, progress=100)
    sync.add("unlucky", K.RETRYING, attempt=1, error={"type": "E", "message": "flaky"}, retry_at=time.time())
    sync.add("stopped", K.CANCELLED, message="cancelled by a user")
    sync.add("unlucky", K.QUEUED, attempt=2)
    sync.add("unlucky", K.STARTED, attempt=2, worker="w")
    error = {"type": "E", "message": "flaky again"}
    sync.add("unlucky", K.FAILED, attempt=2, error=error, dead_lettered=True)
    await _until(lambda: len(sync.kube.patches) == 3, within=10, what="three status patches")
    await _until(lambda: _pending(redis_client, sync.stream) == 0, within=5, what="every entry acked")
    await asyncio.sleep(0.2)  # Events are posted in the background
    assert sorted(sync.kube.posted) == [
        ("stopped", "Cancelled", False),
        ("unlucky", "Failed", True),
        ("unlucky", "Retrying", True),
    ]
    phases = {name: status["phase"] for name, status in sync.kube.patches}
    assert phases == {"fine": "Succeeded", "unlucky": "Failed", "stopped": "Cancelled"}
    assert len(sync.kube.patches) == 3
    assert sync.kube.gets == 0 and sync.exists_calls == []  # one pipeline for the page, no GET


async def test_an_entry_whose_get_failed_is_folded_again(sync, redis_client):
    sync.kube.failing_gets = 1
    # Not a first Queued: the sync must read the status from the apiserver first.
    sync.add("resumed", K.STARTED, attempt=1, worker="w")
    sync.add("resumed", K.SUCCEEDED, attempt=1, progress=100)
    await _until(lambda: bool(sync.kube.patches), within=10, what="the status patch")
    await _until(lambda: _pending(redis_client, sync.stream) == 0, within=5, what="the entries acked")
    assert [(name, status["phase"]) for name, status in sync.kube.patches] == [("resumed", "Succeeded")]
    assert sync.kube.gets == 2


async def test_a_task_the_workers_outran_needs_no_get(sync, redis_client):
    """In a burst the worker has started and finished a task before the sync reads its Queued."""
    sync.add("outran", K.QUEUED, attempt=1)
    sync.kube.statuses["again"] = {"phase": "Running", "attempts": 1}
    sync.add("again", K.QUEUED, attempt=1)  # sent again after its first entries were acked
    redis_client.set(names.synced(sync.uids["again"]), 1)
    marks = [names.synced(sync.uids["again"]), names.synced(sync.uids["outran"])]
    try:
        sync.add("outran", K.STARTED, attempt=1, worker="w")
        sync.add("outran", K.SUCCEEDED, attempt=1, progress=100)
        await _until(lambda: bool(sync.kube.patches), within=10, what="the status patch")
        await _until(lambda: _pending(redis_client, sync.stream) == 0, within=5, what="the entries acked")
        assert redis_client.exists(names.synced(sync.uids["outran"])), "marked with its first XACK"
    finally:
        redis_client.delete(*marks)
    assert sync.kube.patches == [("outran", sync.kube.patches[0][1])]
    assert sync.kube.patches[0][1]["phase"] == "Succeeded"
    assert sync.kube.gets == 1  # "again"; its fold refused the late Queued: nothing to write


def _held(redis_client) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in redis_client.hgetall(names.STATUS_HELD).items()}


@pytest.mark.parametrize("failed_read", [True, False], ids=["after-a-failed-read", "found-when-trimming"])
async def test_a_taken_over_entry_is_acked_and_trimmed_past(sync, redis_client, monkeypatch, failed_read):
    """Another consumer (an operator pod on its way out) read an entry older than what the
    sync folded since; the sync takes it over with its backlog, after a failed read or once
    its trimming finds it."""
    old = int(time.time() * 1000) - 300_000  # older than the minute the trim keeps
    uids = {"adopted": uuid.uuid4().hex, "chatty": uuid.uuid4().hex}
    sync.kube.uids.update({name: uid for name, uid in uids.items()})

    def event(name: str, kind: events.Kind, **fields: Any) -> dict[str, str]:
        return events.TaskEvent(kind=kind, namespace="ns", name=name, uid=uids[name], **fields).encode()

    redis_client.xadd(sync.stream, event("chatty", K.QUEUED, attempt=1), id=f"{old}-0")
    await _until(  # the sync has started (and taken over what was pending then)
        lambda: _pending(redis_client, sync.stream) == 1, within=10, what="the sync reading"
    )
    pipe = redis_client.pipeline(transaction=True)  # read by the other consumer before the sync sees it
    pipe.xadd(sync.stream, event("adopted", K.QUEUED, attempt=1), id=f"{old}-1")
    pipe.xreadgroup(names.STATUS_GROUP, "pod-going-away", {sync.stream: ">"}, count=1)
    pipe.execute()
    for i in range(500):  # several stream nodes, so an approximate trim can drop some
        redis_client.xadd(
            sync.stream, event("chatty", K.PROGRESS, attempt=1, progress=i / 10), id=f"{old + 1}-{i}"
        )
    redis_client.xadd(sync.stream, event("chatty", K.SUCCEEDED, attempt=1, progress=100), id=f"{old + 2}-0")
    await _until(lambda: bool(sync.kube.patches), within=10, what="chatty's status patch")
    await _until(lambda: _pending(redis_client, sync.stream) == 1, within=10, what="chatty's entries acked")
    reads = sync.sync.stream.redis.xreadgroup
    failed: list[bool] = []

    async def read_failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(True)
            raise RedisConnectionError("Redis went away for longer than the client retries")
        return await reads(*args, **kwargs)

    if failed_read:
        monkeypatch.setattr(sync.sync.stream.redis, "xreadgroup", read_failing_once)
    await _until(
        lambda: _pending(redis_client, sync.stream) == 0, within=15, what="the taken-over entry acked"
    )
    assert ("adopted", "Queued") in [(name, status.get("phase")) for name, status in sync.kube.patches]
    await _until(
        lambda: not redis_client.xrange(sync.stream, f"{old}-0", f"{old}-0"),
        within=20,
        what="the stream trimmed past the taken-over entry",
    )


async def test_a_failing_get_holds_back_no_other_task(sync, redis_client):
    sync.kube.unreadable.add("unreadable")
    # Neither is met with its first Queued: both need a GET; the failing one comes first.
    sync.add("unreadable", K.STARTED, attempt=1, worker="w")
    sync.add("readable", K.STARTED, attempt=1, worker="w")
    sync.add("readable", K.SUCCEEDED, attempt=1, progress=100)
    for i in range(1, 1500):  # more than a page of progress while its GET keeps failing
        sync.add("unreadable", K.PROGRESS, attempt=1, progress=i / 15, message=f"step {i}")
    await _until(lambda: bool(sync.kube.patches), within=10, what="the readable task's status")
    assert sync.kube.patches == [("readable", sync.kube.patches[0][1])]
    assert sync.kube.patches[0][1]["phase"] == "Succeeded"
    # Still unreadable: its entries are acknowledged with its held record, events kept short.
    await _until(lambda: _pending(redis_client, sync.stream) == 0, within=10, what="every entry acked")
    held = _held(redis_client)[sync.uids["unreadable"]]
    assert held["status"] is None and [e["kind"] for e in held["waiting"]] == ["started", "progress"]
    assert held["waiting"][-1]["message"] == "step 1499"
    sync.kube.statuses["unreadable"] = {"phase": "Queued", "attempts": 0}
    sync.kube.unreadable.clear()
    await _until(lambda: len(sync.kube.patches) == 2, within=30, what="the unreadable task's status")
    name, status = sync.kube.patches[1]
    assert name == "unreadable" and status["phase"] == "Running" and status["message"] == "step 1499"
    await _until(lambda: not _held(redis_client), within=10, what="the held record released")


async def test_a_task_whose_writes_keep_failing_keeps_no_entries(sync, redis_client, redis_url):
    sync.kube.unwritable.add("stuck")
    sync.add("stuck", K.QUEUED, attempt=1)
    sync.add("stuck", K.STARTED, attempt=1, worker="w")
    for i in range(1, 2500):  # pages of them
        sync.add("stuck", K.PROGRESS, attempt=1, progress=i / 25, message=f"step {i}")
    sync.add("free", K.QUEUED, attempt=1)
    sync.add("free", K.SUCCEEDED, attempt=1, progress=100)
    await _until(lambda: bool(sync.kube.patches), within=10, what="the free task's status")
    # Its writes still fail, and none of its entries is pending: its folded state is held.
    await _until(lambda: _pending(redis_client, sync.stream) == 0, within=15, what="every entry acked")
    held = _held(redis_client)[sync.uids["stuck"]]
    assert held["status"]["phase"] == "Running" and held["status"]["message"] == "step 2499"
    assert sync.kube.patches == [("free", sync.kube.patches[0][1])]
    # An operator started now (a replaced pod) writes what was held, and releases it.
    kube = fakes.RecordingKube(uids=dict(sync.kube.uids))
    r = redisopts.async_client(redis_url)
    replacement = statussync.StatusSync(redis=r, kube=kube, consumer="op-2", interval=INTERVAL)  # type: ignore[arg-type]
    runner = asyncio.ensure_future(replacement.run())
    try:
        await _until(lambda: bool(kube.patches), within=10, what="the held status written")
        assert kube.patches[0][0] == "stuck" and kube.patches[0][1]["message"] == "step 2499"
        await _until(lambda: not _held(redis_client), within=10, what="the held record released")
        assert kube.gets == 0
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await r.aclose()
