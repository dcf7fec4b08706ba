"""A batch loses no item and counts none twice when a worker or the operator dies mid-batch.

Covers: a worker (its whole process group) SIGKILLed while it runs lanes of a batch, twice:
every item ends once in the status (succeeded == total, nothing failed), and the items its
lanes held ran again (their records say Succeeded, finished after the kill); the operator SIGKILLed
mid-batch and started again mid-batch, and SIGKILLed with the batch ending while it is
down: the final counts equal the total, each item's record says Succeeded, and the batch
has exactly one terminal event.
"""

from __future__ import annotations

import time

import pytest

from longtask_contracts import batch
from tests import helpers, lt
from tests.drills import batches
from tests.drills.conftest import DRILL_ENV, DRILL_POOL

pytestmark = pytest.mark.cluster


def _victim(platform, name: str):
    """One more worker on the drill pool, its lanes told apart by its own pod name."""
    return platform.start_worker(
        pool=DRILL_POOL, concurrency=2, extra_env={**DRILL_ENV, "LONGTASK_POD_NAME": name}
    )


def _held_by(client, uid: str, pod: str) -> dict[int, batch.Lane]:
    """The lanes of the batch that a worker of `pod` runs, holding items."""
    return {
        number: lane
        for number, lane in batches.lanes(client, uid).items()
        if lane.pod == pod and lane.state == batch.LaneState.RUNNING and lane.held
    }


def test_worker_killed_mid_batch(platform, kubectl, namespace, redis_client, drill_workers):
    total = 600
    # More lanes than the drill workers run at once: the victims find lanes waiting.
    uid = batches.create(
        kubectl, namespace, "killed", total=total, seconds=0.2, pool=DRILL_POOL, parallelism=10
    )
    held: dict[int, float] = {}  # item -> when the worker that held it was killed
    for kill in range(2):
        pod = f"victim-{kill}"
        victim = _victim(platform, pod)
        helpers.poll(
            lambda pod=pod: _held_by(redis_client, uid, pod), timeout=60, what=f"{pod} running a lane"
        )
        victim.kill()  # SIGKILL to the worker's process group: its main process and its children
        platform.cluster.children.remove(victim)
        killed_at = time.time()
        # Read after the kill: the dead worker cannot change its lanes any more, and the
        # operator ends them only once their lease ran out.
        for lane in _held_by(redis_client, uid, pod).values():
            held.update(dict.fromkeys(lane.held, killed_at))
    assert held, "no kill caught a lane holding items"
    assert batches.counts(redis_client, uid).ended < total, "the kills were to come mid-batch"

    status = lt.wait_phase(kubectl, namespace, "killed", "Succeeded", timeout=180)
    batches.assert_all_succeeded_once(status, redis_client, uid, total)
    found = batches.records(redis_client, uid)
    for index, killed_at in held.items():
        record = found[index]
        assert record.finished_at is not None and record.finished_at > killed_at, (index, record)


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
