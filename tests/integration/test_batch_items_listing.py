"""Listing a batch's items (the gateway's items.py) against a real Redis, on state written by
the real batch script (batchledger.SCRIPT).

Covers: each item's phase as the design derives it (Succeeded and Failed from their records,
Running while a lane holds it, Retrying with nextAttemptAt, Queued never taken), results,
errors and attempts in the entries; pages by index that together hold every item once;
phase filters; a cancel turns waiting items Cancelled and leaves ended and running ones;
on 100,000 items phase=Failed goes straight to the failures and another filter looks at a
bounded stretch per page (a short page with a continue, not a scan of everything).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from longtask_api import items
from longtask_contracts import batch, batchledger, itempages
from tests.batchstate import Batch

Q, R = batch.ItemPhase, batchledger


async def _page(redis_url: str, b: Batch, **kw: Any) -> tuple[list[dict[str, Any]], int | None]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await items.page(client, uid=b.uid, task_ended=False, **kw)
    finally:
        await client.aclose()


async def _all(redis_url: str, b: Batch, *, total: int, phase: Q | None, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        entries, start = await _page(redis_url, b, total=total, phase=phase, limit=limit, start=start)
        assert len(entries) <= limit
        out += entries
    return out


async def test_phases_results_and_pages(redis_url, redis_client):
    b = Batch(redis_client, total=12, parallelism=3)
    assert b.take(1, 4) == [0, 1, 2, 3]
    done = batch.ItemRecord(
        index=0, phase=Q.SUCCEEDED, attempts=1, result={"n": 0}, started_at=b.now, finished_at=b.now
    )
    failed = batch.ItemRecord(
        index=1, phase=Q.FAILED, attempts=2, error={"type": "ValueError", "message": "bad"}
    )
    retrying = batch.ItemRecord(index=2, phase=Q.RETRYING, attempts=1)
    b.report(1, [
        R.Outcome(index=0, code="s", record=done),
        R.Outcome(index=1, code="f", record=failed),
        R.Outcome(index=2, code="r", record=retrying, due=b.now + 100),
        R.Outcome(index=3, code="q", record=None),
    ])  # fmt: skip
    assert b.take(2, 2) == [3], "a returned item is taken again, alone"
    assert b.take(3, 3) == [4, 5, 6]

    every = await _all(redis_url, b, total=12, phase=None, limit=5)
    assert [e["index"] for e in every] == list(range(12)), "every item once, by index"
    by_index = {e["index"]: e for e in every}
    assert by_index[0] == {
        "index": 0, "phase": "Succeeded", "attempts": 1, "result": {"n": 0},
        "startedAt": batch.iso(b.now), "finishedAt": batch.iso(b.now),
    }  # fmt: skip
    assert by_index[1]["phase"] == "Failed" and by_index[1]["error"] == {
        "type": "ValueError",
        "message": "bad",
    }
    assert by_index[1]["attempts"] == 2
    assert by_index[2]["phase"] == "Retrying" and by_index[2]["nextAttemptAt"] == batch.iso(b.now + 100)
    assert [by_index[i]["phase"] for i in range(3, 7)] == ["Running"] * 4
    assert [by_index[i] for i in range(7, 12)] == [
        {"index": i, "phase": "Queued", "attempts": 0} for i in range(7, 12)
    ]

    async def indexes(phase: Q, limit: int = 2) -> list[int]:
        return [e["index"] for e in await _all(redis_url, b, total=12, phase=phase, limit=limit)]

    assert await indexes(Q.FAILED) == [1]
    assert await indexes(Q.RUNNING) == [3, 4, 5, 6]
    assert await indexes(Q.RETRYING) == [2]
    assert await indexes(Q.QUEUED) == [7, 8, 9, 10, 11]
    assert await indexes(Q.SUCCEEDED) == [0]
    assert await indexes(Q.CANCELLED) == []

    b.call("cancel", "Cancelled", 3600)
    assert await indexes(Q.CANCELLED) == [2, 7, 8, 9, 10, 11], "waiting items never start"
    assert await indexes(Q.RUNNING) == [3, 4, 5, 6], "running ones until their lanes report"
    assert await indexes(Q.SUCCEEDED) == [0] and await indexes(Q.FAILED) == [1]


async def test_pages_of_a_large_batch_are_bounded(redis_url, redis_client):
    total = 100_000
    b = Batch(redis_client, total=total, parallelism=1)
    assert b.take(1, 3) == [0, 1, 2]
    b.report(1, [
        R.Outcome(index=i, code="f", record=batch.ItemRecord(index=i, phase=Q.FAILED, attempts=1,
                                                             error={"type": "E", "message": str(i)}))
        for i in range(3)
    ])  # fmt: skip

    entries, more = await _page(redis_url, b, total=total, phase=Q.FAILED, limit=2, start=0)
    assert [e["index"] for e in entries] == [0, 1] and more == 2
    entries, more = await _page(redis_url, b, total=total, phase=Q.FAILED, limit=2, start=2)
    assert [e["index"] for e in entries] == [2] and more is None

    # Nothing succeeded: a page looks at SCAN_MAX indexes and says where to go on.
    entries, more = await _page(redis_url, b, total=total, phase=Q.SUCCEEDED, limit=100, start=0)
    assert entries == [] and more == itempages.SCAN_MAX
    entries, more = await _page(redis_url, b, total=total, phase=None, limit=1000, start=total - 10)
    assert [e["index"] for e in entries] == list(range(total - 10, total)) and more is None
