"""A worker pool for fault drills: short leases and grace periods, so drills take seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from longtask_dev import platform as platform_mod
from longtask_dev import procs

DRILL_POOL = "drill"
DRILL_ENV = {
    "LONGTASK_LEASE_SECONDS": "2",  # a dead worker's attempt is re-queued ~2 s after it died
    "LONGTASK_CANCEL_GRACE_SECONDS": "2",
}


@pytest.fixture(scope="module")
def drill_workers(platform: platform_mod.Platform) -> Iterator[list[procs.Child]]:
    workers = [platform.start_worker(pool=DRILL_POOL, concurrency=2, extra_env=DRILL_ENV) for _ in range(2)]
    yield workers
    for worker in workers:
        if worker in platform.cluster.children:
            platform.stop_child(worker)
