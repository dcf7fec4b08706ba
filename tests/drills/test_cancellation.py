"""Cancellation is durable: written in the spec, it survives restarts and reaches running code.

Covers: a queued task cancelled while the operator is down ends Cancelled once the
operator is back, and never starts; a running cooperative task stops within the grace
period; a running task that ignores cancellation is stopped forcibly after the grace
period, with the operator restarted in between; deleting a running LongTask cancels it
and the object goes away at once (no finalizer); deleting unfinished LongTasks while the
operator is down cancels them once it is back (its sweep), a queued one never starting.
"""

from __future__ import annotations

import json

import pytest

from longtask_contracts import events, names
from tests import helpers, lt
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster
CANCEL = json.dumps({"spec": {"cancel": True}})


def _patch_cancel(kubectl, namespace: str, name: str) -> None:
    kubectl("patch", "-n", namespace, f"lt/{name}", "--type=merge", "-p", CANCEL)


def test_queued_task_cancelled_while_the_operator_is_down(platform, kubectl, namespace, redis_client):
    uid = lt.create(kubectl, namespace, "waiting", task="demo.noop", pool="nobody-serves-this")
    lt.wait_phase(kubectl, namespace, "waiting", "Queued")
    platform.kill_operator()
    try:
        _patch_cancel(kubectl, namespace, "waiting")
    finally:
        platform.start_operator()
    status = lt.wait_phase(kubectl, namespace, "waiting", "Cancelled")
    assert status["attempts"] == 0 and "started" not in lt.kinds(redis_client, uid)


def test_running_cooperative_task_stops(platform, kubectl, namespace, redis_client, drill_workers):
    uid = lt.create(
        kubectl, namespace, "coop", task="demo.sleep", pool=DRILL_POOL, params={"seconds": 60, "steps": 120}
    )
    lt.wait_phase(kubectl, namespace, "coop", "Running")
    _patch_cancel(kubectl, namespace, "coop")
    lt.wait_phase(kubectl, namespace, "coop", "Cancelled", timeout=30)
    stream = lt.stream(redis_client, uid)
    assert stream[-1].kind == events.Kind.CANCELLED and stream[-1].worker
    assert not redis_client.exists(names.claim(uid))


def test_running_task_ignoring_cancel_is_stopped_after_grace(
    platform, kubectl, namespace, redis_client, drill_workers
):
    uid = lt.create(
        kubectl,
        namespace,
        "stubborn",
        task="demo.sleep",
        pool=DRILL_POOL,
        params={"seconds": 60, "steps": 6, "cooperative": False},
    )
    lt.wait_phase(kubectl, namespace, "stubborn", "Running")
    pid = int(redis_client.get(names.claim(uid)).rsplit("/", 1)[1])
    platform.kill_operator()
    platform.start_operator()
    _patch_cancel(kubectl, namespace, "stubborn")
    status = lt.wait_phase(kubectl, namespace, "stubborn", "Cancelled", timeout=30)
    assert "grace period" in status["message"]
    helpers.poll(
        lambda: not helpers.process_alive(pid), timeout=10, what="the stubborn process to be stopped"
    )
    last = lt.stream(redis_client, uid)[-1]
    assert last.kind == events.Kind.CANCELLED


def test_deleting_a_running_task_cancels_it(platform, kubectl, namespace, redis_client, drill_workers):
    uid = lt.create(
        kubectl, namespace, "doomed", task="demo.sleep", pool=DRILL_POOL, params={"seconds": 60, "steps": 120}
    )
    lt.wait_phase(kubectl, namespace, "doomed", "Running")
    assert not lt.get(kubectl, namespace, "doomed")["metadata"].get("finalizers")
    kubectl("delete", "-n", namespace, "lt/doomed", "--timeout=30s")
    # The 60 s attempt ends within seconds: its lease is released (its events went with it).
    helpers.poll(
        lambda: not redis_client.exists(names.claim(uid)), timeout=15, what="the running attempt to stop"
    )


def test_deleted_while_the_operator_is_down(platform, kubectl, namespace, redis_client, drill_workers):
    running = lt.create(
        kubectl, namespace, "gone-running", task="demo.sleep", pool=DRILL_POOL, params={"seconds": 120}
    )
    queued = lt.create(kubectl, namespace, "gone-queued", task="demo.noop", pool="nobody-serves-this-either")
    lt.wait_phase(kubectl, namespace, "gone-running", "Running")
    lt.wait_phase(kubectl, namespace, "gone-queued", "Queued")
    platform.kill_operator()
    try:
        # No finalizer: the deletes complete with no operator running.
        kubectl("delete", "-n", namespace, "lt/gone-running", "lt/gone-queued", "--timeout=30s")
    finally:
        platform.start_operator(extra_env={"LONGTASK_SWEEP_SECONDS": "1"})
    helpers.poll(
        lambda: not redis_client.exists(names.claim(running), names.current(queued)),
        timeout=60,
        what="the sweep to cancel the running attempt and forget the queued one",
    )

    # The queued attempt's message is still on its queue; a worker that takes it refuses it.
    def taken() -> bool:
        lists = names.queue_lists("nobody-serves-this-either")
        in_flight = any(queued in raw for raw in redis_client.hvals(names.KOMBU_UNACKED))
        return not sum(redis_client.llen(key) for key in lists) and not in_flight

    worker = platform.start_worker(pool="nobody-serves-this-either", concurrency=1)
    try:
        helpers.poll(taken, timeout=60, what="the worker to take and acknowledge the deleted task's message")
        assert not redis_client.exists(names.started(queued), names.claim(queued))
    finally:
        platform.stop_child(worker)
