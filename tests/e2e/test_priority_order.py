"""spec.priority is served in the documented order: 9 first, 0 last.

Covers: six tasks of mixed priorities queued before their pool has a worker run, once a
one-slot worker starts, in priority order (ties in any order); each priority has its own
kombu list, so 1 and 2 (or 7 and 8) are not lumped together.
"""

from __future__ import annotations

import pytest

from tests import lt, pools

pytestmark = pytest.mark.cluster

PRIORITIES = [0, 9, 3, 8, 7, 1]


def test_queued_tasks_start_in_priority_order(platform, kubectl, namespace, redis_client):
    pool = pools.unique_pool()
    uids = {}
    for i, priority in enumerate(PRIORITIES):
        uids[priority] = lt.create(
            kubectl, namespace, f"p{i}", task="demo.noop", pool=pool, priority=priority
        )
    for i in range(len(PRIORITIES)):
        lt.wait_phase(kubectl, namespace, f"p{i}", "Queued")
    worker = platform.start_worker(pool=pool, concurrency=1)
    try:
        for i in range(len(PRIORITIES)):
            lt.wait_phase(kubectl, namespace, f"p{i}", "Succeeded")
    finally:
        platform.stop_child(worker)
    started = {
        priority: next(e.at for e in lt.stream(redis_client, uid) if e.kind.value == "started")
        for priority, uid in uids.items()
    }
    order = sorted(started, key=started.__getitem__)
    assert order == sorted(PRIORITIES, reverse=True)
