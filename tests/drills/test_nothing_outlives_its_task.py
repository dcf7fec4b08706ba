"""Nothing of a LongTask outlives it forever in Redis.

Covers: a dead-lettered task deleted while the operator is down loses its dead-letter
record once the operator is back (its sweep finds the LongTask gone); a cancel flag is
written with an expiry (spec.cancel in etcd raises it again whenever needed).
"""

from __future__ import annotations

import pytest

from longtask_contracts import names
from tests import helpers, lt
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster


def test_dead_letter_record_of_a_task_deleted_while_the_operator_was_down(
    platform, kubectl, namespace, redis_client, drill_workers
):
    uid = lt.create(kubectl, namespace, "doomed", task="demo.fail", pool=DRILL_POOL, retry={"maxRetries": 0})
    assert lt.wait_phase(kubectl, namespace, "doomed", "Failed")["deadLettered"] is True
    assert redis_client.hexists(names.DLQ, uid)
    platform.kill_operator()
    try:
        kubectl("delete", "-n", namespace, "lt/doomed", "--wait=true")
    finally:
        platform.start_operator()
    helpers.poll(
        lambda: not redis_client.hexists(names.DLQ, uid), timeout=30, what="the record to be forgotten"
    )


def test_cancel_flag_expires(platform, kubectl, namespace, redis_client):
    uid = lt.create(kubectl, namespace, "parked", task="demo.noop", pool=f"nobody-{namespace}")
    lt.wait_phase(kubectl, namespace, "parked", "Queued")
    kubectl("patch", "-n", namespace, "lt/parked", "--type=merge", "-p", '{"spec": {"cancel": true}}')
    lt.wait_phase(kubectl, namespace, "parked", "Cancelled")
    assert 0 < redis_client.ttl(names.cancel_flag(uid)) <= 30 * 24 * 3600
