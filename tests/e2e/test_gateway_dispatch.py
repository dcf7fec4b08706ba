"""The gateway sends attempt 1 of the tasks it creates itself; the operator sends the rest.

Covers: with the operator stopped, a task POSTed to the gateway is queued, started and
succeeds on a real worker (its SSE stream and Redis say so; only the gateway can have sent
it), the guard says "sent" and the gateway counts the dispatch, and the operator started
afterwards converges its status without sending it again; with both running, each of a
batch of tasks POSTed at once is queued once, received by the worker once and started
once (gateway and operator race for the guard; one sends); with
LONGTASK_GATEWAY_DISPATCH=0 the gateway sends nothing (no guard, no event while the
operator is stopped) and the operator sends the task once it runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import httpx
import pytest

from longtask_contracts import names
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import helpers, lt

pytestmark = pytest.mark.cluster


def _submit(api_url: str, namespace: str, name: str, **spec: object) -> dict:
    response = httpx.post(
        f"{api_url}/v1/namespaces/{namespace}/tasks", json={"name": name, "spec": spec}, timeout=30
    )
    assert response.status_code == 202, response.text
    return response.json()


def _counter(api_url: str, metric: str) -> float:
    text = httpx.get(f"{api_url}/metrics", timeout=10).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(f"{metric} "))


def _received(platform: platform_mod.Platform, task_id: str) -> int:
    """How many times a worker received this Celery message (its log: `Task ... received`)."""
    logs = [child.log_path for child in platform.cluster.children if child.name.startswith("worker-")]
    return sum(path.read_text(errors="replace").count(f"[{task_id}] received") for path in logs)


def test_with_the_operator_stopped_the_gateway_sends_the_task(platform, namespace, redis_client, kubectl):
    dispatched = _counter(platform.api_url, "longtask_api_dispatched_total")
    platform.kill_operator()
    try:
        created = _submit(
            platform.api_url, namespace, "fast", task="demo.sleep", params={"seconds": 0.5, "steps": 2}
        )
        uid = created["uid"]
        with httpx.Client(base_url=platform.api_url) as client:
            kinds = [e.event for e in helpers.sse_events(client, created["links"]["events"], timeout=60)]
        assert kinds[0] == "queued" and "started" in kinds and kinds[-1] == "succeeded", kinds
        assert redis_client.get(names.dispatch_guard(uid)) == "sent"
        assert redis_client.exists(names.done(uid))
        assert _counter(platform.api_url, "longtask_api_dispatched_total") == dispatched + 1
    finally:
        platform.start_operator()
    status = lt.wait_phase(kubectl, namespace, "fast", "Succeeded")
    assert status["attempts"] == 1
    assert lt.kinds(redis_client, uid).count("queued") == 1 and lt.starts(redis_client, uid) == 1


def test_gateway_and_operator_send_attempt_1_once(platform, namespace, redis_client, kubectl):
    count = 16
    with futures.ThreadPoolExecutor(count) as pool:
        created = list(
            pool.map(
                lambda i: _submit(platform.api_url, namespace, f"once-{i}", task="demo.noop"),
                range(count),
            )
        )
    for task in created:
        lt.wait_phase(kubectl, namespace, task["name"], "Succeeded")
    for task in created:
        uid = task["uid"]
        kinds = lt.kinds(redis_client, uid)
        assert kinds.count("queued") == 1, (task["name"], kinds)
        assert lt.starts(redis_client, uid) == 1, (task["name"], kinds)
        assert _received(platform, names.celery_task_id(uid, 1)) == 1, task["name"]


@pytest.fixture
def gateway_without_dispatch(platform: platform_mod.Platform) -> Iterator[str]:
    port = procs.free_port()
    child = platform.start_api(port=port, extra_env={"LONGTASK_GATEWAY_DISPATCH": "0"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        platform.stop_child(child)


def test_dispatch_off_leaves_sending_to_the_operator(
    platform, gateway_without_dispatch, namespace, redis_client, kubectl
):
    platform.kill_operator()
    try:
        uid = _submit(gateway_without_dispatch, namespace, "slow", task="demo.noop")["uid"]
        time.sleep(1.0)  # the gateway, were it sending, would have queued it within milliseconds
        assert not redis_client.exists(names.dispatch_guard(uid))
        assert lt.kinds(redis_client, uid) == []
        assert _counter(gateway_without_dispatch, "longtask_api_dispatched_total") == 0
    finally:
        platform.start_operator()
    lt.wait_phase(kubectl, namespace, "slow", "Succeeded")
    assert lt.kinds(redis_client, uid).count("queued") == 1 and lt.starts(redis_client, uid) == 1
