"""A batch loses no item and counts none twice when a worker or the operator dies mid-batch.

Covers: the worker process running a lane SIGKILLed, twice, mid-batch: every item ends once
in the status (succeeded == total, nothing failed), and the items the dead lanes held ran
again (their records say Succeeded, finished after the kill); the operator SIGKILLed
mid-batch and started again mid-batch, and SIGKILLed with the batch ending while it is
down: the final counts equal the total, each item's record says Succeeded, and the batch
has exactly one terminal event.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from longtask_contracts import batch
from tests import helpers, lt
from tests.drills import batches
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster


def _pid(lane: batch.Lane) -> int | None:
    """The pid of the worker process running a lane (its pod field is "host/pid")."""
    host, _, pid = lane.pod.rpartition("/")
    return int(pid) if host and pid.isdigit() else None


def _running_lane(client, uid: str, skip: set[int]) -> tuple[int, int] | None:
    """(lane, pid) of a lane that a live worker process runs with items held, not in `skip`."""
    for number, lane in batches.lanes(client, uid).items():
        pid = _pid(lane)
        if lane.state == batch.LaneState.RUNNING and lane.held and pid and pid not in skip:
            return number, pid
    return None


def test_worker_killed_mid_batch(platform, kubectl, namespace, redis_client, drill_workers):
    total = 120
    uid = batches.create(
        kubectl, namespace, "killed", total=total, seconds=0.2, pool=DRILL_POOL, parallelism=4
    )
    held: dict[int, float] = {}  # item -> when the process that held it was killed
    pids: set[int] = set()
    while len(pids) < 2:
        number, pid = helpers.poll(
            lambda: _running_lane(redis_client, uid, pids), timeout=60, what="a lane mid-run", interval=0.02
        )
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed_at = time.time()
        pids.add(pid)
        # Read after the kill: the dead process cannot change its lane any more, and the
        # operator ends it only once its lease ran out.
        lane = batches.lanes(redis_client, uid)[number]
        if _pid(lane) == pid and lane.state == batch.LaneState.RUNNING:
            held.update(dict.fromkeys(lane.held, killed_at))
    assert held, "no kill caught a lane holding items"

    status = lt.wait_phase(kubectl, namespace, "killed", "Succeeded", timeout=180)
    batches.assert_all_succeeded_once(status, redis_client, uid, total)
    found = batches.records(redis_client, uid)
    for index, killed_at in held.items():
        record = found[index]
        assert record.finished_at is not None and record.finished_at > killed_at, (index, record)
        assert record.attempts >= 1, (index, record)


def test_operator_killed_and_restarted_mid_batch(platform, kubectl, namespace, redis_client, drill_workers):
    total = 400
    uid = batches.create(
        kubectl, namespace, "operator-mid", total=total, seconds=0.1, pool=DRILL_POOL, parallelism=4
    )
    helpers.poll(lambda: batches.counts(redis_client, uid).succeeded >= 20, timeout=60, what="items done")
    platform.kill_operator()
    try:
        before = batches.counts(redis_client, uid).succeeded
        helpers.poll(
            lambda: batches.counts(redis_client, uid).succeeded >= min(total, before + 30),
            timeout=60,
            what="items done while the operator is down",
        )
    finally:
        platform.start_operator()
    status = lt.wait_phase(kubectl, namespace, "operator-mid", "Succeeded", timeout=180)
    batches.assert_all_succeeded_once(status, redis_client, uid, total)


def test_batch_ends_while_the_operator_is_down(platform, kubectl, namespace, redis_client, drill_workers):
    total = 60
    uid = batches.create(
        kubectl, namespace, "operator-down", total=total, seconds=0.05, pool=DRILL_POOL, parallelism=4
    )
    helpers.poll(lambda: batches.counts(redis_client, uid).succeeded >= 5, timeout=60, what="items done")
    platform.kill_operator()
    try:
        helpers.poll(
            lambda: batches.counts(redis_client, uid).ended == total,
            timeout=60,
            what="every item ended while the operator is down",
        )
    finally:
        platform.start_operator()
    status = lt.wait_phase(kubectl, namespace, "operator-down", "Succeeded", timeout=120)
    batches.assert_all_succeeded_once(status, redis_client, uid, total)
