"""Reads a page of a batch's items from Redis for GET .../tasks/{name}/items (Redis only).

It must not touch Kubernetes (the route read the LongTask) nor decide phases
(longtask_contracts.itempages does, from what this read). A page costs a bounded number of
round trips and looks at a bounded number of indexes, whatever the batch's size:
phase=Failed and phase=Running go straight to their items (the failure set, the lanes); any
other filter looks at up to itempages.SCAN_MAX indexes and may answer fewer entries than
`limit` with a `continue` to go on from.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import batch, itempages, names


async def page(
    redis: aioredis.Redis,
    *,
    uid: str,
    total: int,
    phase: batch.ItemPhase | None,
    limit: int,
    start: int,
    task_ended: bool,
) -> tuple[list[dict[str, Any]], int | None]:
    """The entries of batch `uid` (`total` items) from index `start` on, in `phase` (None:
    any), at most `limit`, and the index the next page starts at (None: no more).
    `task_ended`: the LongTask is in a terminal phase (a batch that never started then has
    only Cancelled items)."""
    if phase is batch.ItemPhase.FAILED:
        found: Any = await redis.zrangebyscore(names.items_failed(uid), start, "+inf", start=0, num=limit + 1)
        indexes = [int(i) for i in found]
    elif phase is batch.ItemPhase.RUNNING:
        lanes: Any = await redis.hgetall(names.lanes(uid))
        held = itempages.held_indexes(_texts(lanes))
        indexes = sorted(i for i in held if i >= start)[: limit + 1]
    else:
        span = limit if phase is None else max(limit, itempages.SCAN_MAX)
        indexes = list(range(start, min(total, start + span)))
    direct = phase in (batch.ItemPhase.FAILED, batch.ItemPhase.RUNNING)
    if not indexes:
        return [], None
    snap = await _snapshot(redis, uid=uid, total=total, indexes=indexes, task_ended=task_ended)
    end = total if direct else indexes[-1] + 1
    chosen, next_index = itempages.select(snap, indexes=indexes, phase=phase, limit=limit, end=end)
    if not chosen:
        return [], next_index
    # Their records and due times, read now (a record only grows more complete meanwhile).
    pipe = redis.pipeline(transaction=True)
    pipe.hmget(names.items_records(uid), [str(i) for i, _ in chosen])
    pipe.zmscore(names.items_retry(uid), [str(i) for i, _ in chosen])
    records, dues = await pipe.execute()
    entries = [
        itempages.entry(index=i, phase=p, record=_text(r) if r else None, due=d)
        for (i, p), r, d in zip(chosen, records, dues, strict=True)
    ]
    return entries, next_index


async def _snapshot(
    redis: aioredis.Redis, *, uid: str, total: int, indexes: list[int], task_ended: bool
) -> itempages.Snapshot:
    """One atomic read (MULTI) of what decides the phases of `indexes`."""
    members = [str(i) for i in indexes]
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(names.batch(uid))
    pipe.hgetall(names.lanes(uid))
    pipe.zmscore(names.items_retry(uid), members)
    pipe.zmscore(names.items_failed(uid), members)
    for member in members:
        pipe.hstrlen(names.items_records(uid), member)
    raw, lanes, retry, failed, *lengths = await pipe.execute()
    return itempages.Snapshot(
        total=total,
        raw=_texts(raw) or None,
        held=itempages.held_indexes(_texts(lanes)),
        recorded=frozenset(i for i, n in zip(indexes, lengths, strict=True) if n),
        failed=frozenset(i for i, s in zip(indexes, failed, strict=True) if s is not None),
        retry_due={i: float(s) for i, s in zip(indexes, retry, strict=True) if s is not None},
        never_ran=task_ended and not raw,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
