"""The operator's status stream consumer against a real Redis.

Covers: a new operator under another consumer name adopts every entry its predecessor
read but never acknowledged (a replaced pod loses nothing), and reads them as its own
backlog; creating the consumer group twice is harmless.
"""

from __future__ import annotations

import uuid

import pytest

from longtask_contracts import names, redisopts
from longtask_operator import statussync

pytestmark = pytest.mark.cluster


async def test_orphaned_entries_are_adopted(cluster, redis_client, monkeypatch):
    stream = f"{names.STATUS_STREAM}:test-{uuid.uuid4().hex[:8]}"
    r = redisopts.async_client(cluster.redis_url)
    sync = statussync.StatusSync(redis=r, kube=None, consumer="replacement", interval=1.0)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            redis_client.xadd(stream, {"event": "{}"})
        redis_client.xgroup_create(stream, names.STATUS_GROUP, id="0")
        redis_client.xreadgroup(names.STATUS_GROUP, "gone-pod", {stream: ">"})  # read, never acked
        monkeypatch.setattr(names, "STATUS_STREAM", stream)
        await sync.ensure_group()  # exists already: no error
        await sync.adopt_orphans()
        pending = redis_client.xpending(stream, names.STATUS_GROUP)
        assert pending["pending"] == 3
        assert [(c["name"], c["pending"]) for c in pending["consumers"]] == [("replacement", 3)]
        backlog = await r.xreadgroup(names.STATUS_GROUP, "replacement", {stream: "0"})
        assert len(backlog[0][1]) == 3
    finally:
        redis_client.delete(stream)
        await r.aclose()
