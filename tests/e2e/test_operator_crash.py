"""An operator killed at the worst moments neither loses nor double-runs a task.

Covers: SIGKILL right after dispatch (message sent, status possibly not yet written),
then a restart: the task ends Succeeded, started exactly once, attempts 1; SIGKILL while
the task runs (status-stream entries not yet acknowledged): the restarted operator
converges the status to Succeeded with progress 100.
"""

from __future__ import annotations

import json

import pytest

from longtask_contracts import events, names
from tests import helpers

pytestmark = pytest.mark.cluster


def _create(kubectl, namespace: str, name: str, params: dict) -> str:
    lt = {
        "apiVersion": "longtask.io/v1alpha1",
        "kind": "LongTask",
        "metadata": {"name": name},
        "spec": {"task": "demo.sleep", "params": params},
    }
    out = kubectl(
        "create", "-n", namespace, "-f", "-", "-o", "jsonpath={.metadata.uid}", input=json.dumps(lt)
    )
    return out.stdout


def _started_count(redis_client, uid: str) -> int:
    entries = redis_client.xrange(names.events_stream(uid))
    return sum(events.TaskEvent.decode(f).kind == events.Kind.STARTED for _, f in entries)


def _status(kubectl, namespace: str, name: str) -> dict:
    return json.loads(kubectl("get", "-n", namespace, f"lt/{name}", "-o", "json").stdout).get("status", {})


def test_kill_between_dispatch_and_status_update(platform, kubectl, namespace, redis_client):
    uid = _create(kubectl, namespace, "crash-dispatch", {"seconds": 1, "steps": 2})
    helpers.poll(
        lambda: redis_client.exists(names.dispatch_guard(uid)),
        timeout=30,
        what="the dispatch guard",
        interval=0.005,
    )
    platform.kill_operator()
    try:
        helpers.poll(
            lambda: redis_client.exists(names.done(uid)),
            timeout=30,
            what="the worker to finish while the operator is down",
        )
    finally:
        platform.start_operator()
    kubectl(
        "wait",
        "-n",
        namespace,
        "lt/crash-dispatch",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=60s",
    )
    assert _status(kubectl, namespace, "crash-dispatch")["attempts"] == 1
    assert _started_count(redis_client, uid) == 1


def test_kill_while_running_converges_after_restart(platform, kubectl, namespace, redis_client):
    uid = _create(kubectl, namespace, "crash-running", {"seconds": 3, "steps": 6})
    helpers.poll(
        lambda: _status(kubectl, namespace, "crash-running").get("phase") == "Running",
        timeout=30,
        what="Running",
    )
    platform.kill_operator()
    try:
        helpers.poll(
            lambda: redis_client.exists(names.done(uid)),
            timeout=30,
            what="the task to finish while the operator is down",
        )
        assert _status(kubectl, namespace, "crash-running")["phase"] == "Running"
    finally:
        platform.start_operator()
    kubectl(
        "wait",
        "-n",
        namespace,
        "lt/crash-running",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=60s",
    )
    status = _status(kubectl, namespace, "crash-running")
    assert status["progress"] == 100 and status["attempts"] == 1
    assert _started_count(redis_client, uid) == 1
