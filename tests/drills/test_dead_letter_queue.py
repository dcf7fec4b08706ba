"""The dead-letter queue can be listed and replayed from the gateway and the CLI.

Covers: tasks that exhaust their retries appear in GET /v1/deadletters and in `longtask
dlq list` with their reason and last error; `longtask dlq replay NAME` and the gateway's
replay-all each make a new, recorded attempt of the same LongTask; `longtask cancel`
cancels through the gateway; the DLQ depth is exported as a metric.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from longtask_contracts import names
from tests import helpers, lt
from tests.drills.conftest import DRILL_POOL

pytestmark = pytest.mark.cluster
NO_RETRY = {"maxRetries": 0}


def _cli(platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longtask_cli", *args, "--api", platform.api_url],
        capture_output=True,
        text=True,
        check=False,
    )


def test_list_and_replay_from_gateway_and_cli(platform, kubectl, namespace, redis_client, drill_workers):
    for name in ("dl-one", "dl-two"):
        lt.create(kubectl, namespace, name, task="demo.fail", pool=DRILL_POOL, retry=NO_RETRY)
    for name in ("dl-one", "dl-two"):
        assert lt.wait_phase(kubectl, namespace, name, "Failed")["deadLettered"] is True

    listed = httpx.get(f"{platform.api_url}/v1/deadletters", params={"namespace": namespace}).json()["items"]
    assert sorted(e["name"] for e in listed) == ["dl-one", "dl-two"]
    assert {e["reason"] for e in listed} == {"RetriesExhausted"}
    assert listed[0]["error"]["type"] == "RetryableError" and listed[0]["spec"]["task"] == "demo.fail"
    out = _cli(platform, "dlq", "list", "-n", namespace)
    assert out.returncode == 0 and "dl-one" in out.stdout and "RetriesExhausted" in out.stdout

    out = _cli(platform, "dlq", "replay", "dl-one", "-n", namespace)
    assert out.returncode == 0, out.stderr
    helpers.poll(
        lambda: (
            lt.status(kubectl, namespace, "dl-one").get("replays") == 1
            and lt.status(kubectl, namespace, "dl-one")["phase"] == "Failed"
        ),
        timeout=30,
        what="replay 1",
    )
    assert lt.status(kubectl, namespace, "dl-one")["attempts"] == 2

    replayed = httpx.post(f"{platform.api_url}/v1/deadletters/replay", params={"namespace": namespace}).json()
    assert sorted(e["name"] for e in replayed["items"]) == ["dl-one", "dl-two"]
    for name, attempts in (("dl-one", 3), ("dl-two", 2)):
        helpers.poll(
            lambda n=name, a=attempts: (
                lt.status(kubectl, namespace, n)["attempts"] == a
                and lt.status(kubectl, namespace, n)["phase"] == "Failed"
            ),
            timeout=30,
            what=f"{name} replayed",
        )

    assert redis_client.hlen(names.DLQ) >= 2
    helpers.poll(lambda: _dlq_depth(platform) >= 2, timeout=10, what="longtask_dlq_depth to count both")


def _dlq_depth(platform) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{platform.operator_metrics_port}/metrics").text
    return float(
        next(line.split()[1] for line in metrics.splitlines() if line.startswith("longtask_dlq_depth"))
    )


def test_unknown_replay_target_and_cancel_via_cli(platform, kubectl, namespace, drill_workers):
    out = _cli(platform, "dlq", "replay", "nothing-here", "-n", namespace)
    assert out.returncode == 1 and "not in the dead-letter queue" in out.stderr
    lt.create(
        kubectl, namespace, "long", task="demo.sleep", pool=DRILL_POOL, params={"seconds": 60, "steps": 60}
    )
    lt.wait_phase(kubectl, namespace, "long", "Running")
    out = _cli(platform, "cancel", "long", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert lt.wait_phase(kubectl, namespace, "long", "Cancelled", timeout=30)["phase"] == "Cancelled"
