"""A worker's GET /healthz (its liveness probe) fails when its main process is wedged, never
because it is busy.

Covers, with a real worker (prefork, concurrency 1) whose consumer must tick within 4 s: while
its only slot runs a 25 s task, every /healthz answers 200 with a fresh loop tick; with the
consumer's event loop blocked in the main process (a signal handler that sleeps, the metrics
thread still answering) /healthz answers 503 within seconds, and 200 again once the loop
turns; with the main process SIGSTOPped the dev node's own probe check (podprobes.check, what
restarts a pod's container) fails; /metrics still serves the metrics.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from longtask_dev import binaries, podprobes, podspec, procs
from tests import helpers, lt

pytestmark = pytest.mark.cluster

STALE_SECONDS = 6  # generous: a loaded machine may delay a tick by a second or two


def _healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_busy_worker_stays_live_and_a_wedged_one_fails_healthz(platform, kubectl, namespace):
    port = procs.free_port()
    worker = platform.start_worker(
        pool="liveness",
        concurrency=1,
        tasks="longtask_worker.tasks.demo,tests.wedgetasks",
        extra_env={
            "LONGTASK_METRICS_PORT": str(port),
            "LONGTASK_HEALTH_STALE_SECONDS": str(STALE_SECONDS),
            "LONGTASK_TEST_WEDGE_SECONDS": "15",
            "PYTHONPATH": str(binaries.REPO_ROOT),
        },
    )
    try:
        lt.create(
            kubectl,
            namespace,
            "busy",
            task="demo.sleep",
            pool="liveness",
            params={"seconds": 25, "steps": 25},
        )
        lt.wait_phase(kubectl, namespace, "busy", "Running")
        readings, began = [], time.monotonic()
        while lt.status(kubectl, namespace, "busy").get("phase") == "Running":
            readings.append(_healthz(port))
            time.sleep(0.25)
        # Not a timing threshold: the 25 s task must simply have outlived the stale limit a
        # few times over while it was read, or the check below would prove nothing.
        assert time.monotonic() - began > 3 * STALE_SECONDS and len(readings) > 3, readings
        assert all(code == 200 and body["live"] and not body["paused"] for code, body in readings), readings
        assert lt.status(kubectl, namespace, "busy").get("phase") == "Succeeded"

        os.kill(worker.pid, signal.SIGUSR2)  # the consumer's loop blocks for 15 s
        _, body = helpers.poll(
            lambda: (r := _healthz(port))[0] == 503 and r, timeout=30, what="/healthz to fail"
        )
        assert body["live"] is False and body["loopAgeSeconds"] > STALE_SECONDS
        helpers.poll(lambda: _healthz(port)[0] == 200, timeout=60, what="/healthz to recover")

        probe = podspec.Probe(kind="http", port=port, path="/healthz", timeout=2.0)
        assert podprobes.check(probe)
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            assert not podprobes.check(probe), "a stopped main process fails the node's probe"
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        helpers.poll(lambda: podprobes.check(probe), timeout=60, what="the probe to pass again")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert b"longtask_worker_busy_slots" in reply.read()
    finally:
        platform.stop_child(worker)
