"""Helpers for the batch drills: create a batch with kubectl, read its counters, lanes and
item records from Redis (names.py, batch.py), and check that every item ended once."""

from __future__ import annotations

from typing import Any

import redis

from longtask_contracts import batch, names
from tests import lt

FAST_RETRY = {"backoffSeconds": 0.2, "maxBackoffSeconds": 1, "jitter": 0}


def create(kubectl: lt.Kubectl, namespace: str, name: str, *, total: int, seconds: float, **spec: Any) -> str:
    """A batch of `total` demo.echo items taking `seconds` each, item i returning i; its uid."""
    return lt.create(
        kubectl,
        namespace,
        name,
        task="demo.echo",
        params={"seconds": seconds},
        items=[{"value": i} for i in range(total)],
        retry=FAST_RETRY,
        **spec,
    )


def counts(client: redis.Redis, uid: str) -> batch.Counts:
    return batch.counts(client.hgetall(names.batch(uid)), int(client.zcard(names.items_retry(uid))))


def lanes(client: redis.Redis, uid: str) -> dict[int, batch.Lane]:
    return {int(k): batch.Lane.decode(v) for k, v in client.hgetall(names.lanes(uid)).items()}


def records(client: redis.Redis, uid: str) -> dict[int, batch.ItemRecord]:
    return {
        int(k): batch.ItemRecord.model_validate_json(v)
        for k, v in client.hgetall(names.items_records(uid)).items()
    }


def assert_all_succeeded_once(status: dict[str, Any], client: redis.Redis, uid: str, total: int) -> None:
    """The status counts every item once, as succeeded; so do the batch's counters; every item
    has a record that says Succeeded, with its own result (create: item i returns i)."""
    items = status["items"]
    assert items["total"] == total and items["succeeded"] == total, items
    assert not any(items.get(k) for k in ("queued", "running", "failed", "cancelled")), items
    assert items.get("failedIndexes", "") == "", items
    final = counts(client, uid)
    assert (final.total, final.succeeded, final.ended) == (total, total, total), final
    found = records(client, uid)
    assert sorted(found) == list(range(total)), f"records of {len(found)} items, not {total}"
    bad = {i: r for i, r in found.items() if r.phase != batch.ItemPhase.SUCCEEDED or r.result != i}
    assert not bad, list(bad.items())[:5]
    assert lt.kinds(client, uid).count("succeeded") == 1, lt.kinds(client, uid)
