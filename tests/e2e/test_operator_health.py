"""The operator's liveness endpoint is Kopf's own, answered by the operator's event loop.

Covers: GET /healthz answers 200 with the operator's background loops listed (leader
election, status sync, maintenance, the LongTask watch and its sweep, autoscaler, the
schedules' watches and timer); a stopped operator process does not answer it (what the
kubelet's liveness probe then acts on).
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest

pytestmark = pytest.mark.cluster


def test_healthz_lists_the_loops_and_fails_when_the_operator_is_stuck(platform):
    url = f"http://127.0.0.1:{platform.operator_health_port}/healthz"
    reply = httpx.get(url, timeout=5)
    assert reply.status_code == 200
    assert sorted(reply.json()["loops"]) == [
        "autoscaler",
        "leader-election",
        "longtask-watch-all",
        "maintenance",
        "metrics",
        "pool-access-namespaces",
        "pool-access-workerpools",
        "pool-conflicts",
        "redis-repair",
        "schedule-watch-runs",
        "schedule-watch-schedules",
        "schedules",
        "status-sync",
        "task-sweep",
    ]
    operator = platform.cluster.child("operator")
    os.kill(operator.pid, signal.SIGSTOP)
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(url, timeout=2)
    finally:
        os.kill(operator.pid, signal.SIGCONT)
    assert httpx.get(url, timeout=5).status_code == 200
