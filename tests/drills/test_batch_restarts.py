"""A batch survives Redis restarting (AOF on) mid-batch with every item accounted for.

Covers: Redis restarted while a batch's lanes run on two workers; the workers and the
operator reconnect by themselves, and the batch ends Succeeded with every item counted
once as succeeded and a Succeeded record for each.
"""

from __future__ import annotations

import pytest

from tests import helpers, lt
from tests.drills import batches
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster


def test_redis_restarted_mid_batch(platform, cluster, kubectl, namespace, redis_client, drill_workers):
    total = 300
    uid = batches.create(
        kubectl, namespace, "redis-restart", total=total, seconds=0.05, pool=DRILL_POOL, parallelism=4
    )
    helpers.poll(lambda: batches.counts(redis_client, uid).succeeded >= 20, timeout=60, what="items done")
    cluster.restart_redis()
    status = lt.wait_phase(kubectl, namespace, "redis-restart", "Succeeded", timeout=240)
    batches.assert_all_succeeded_once(status, redis_client, uid, total)
