"""A real Prometheus scrapes the real operator, workers and gateway and evaluates the real rules.

Covers:
- Prometheus (Debian's, on loopback, 1 s scrape and evaluation) finds every target up;
- tasks dead-lettered on a real worker (demo.crash killing its process, retries 0) move
  LongTaskDeadLetterQueueGrowing to pending, then firing, in Prometheus' /api/v1/alerts;
  replaying them through the gateway once the cause is fixed (the file demo.crash looks
  for) empties the queue, and the alert resolves;
- under load (tasks that sleep, fail and retry, batches whose items succeed, retry and
  fail, an SSE stream, a WorkerPool, a LongTaskSchedule whose Forbid runs succeed and
  outlast its interval, so times are also skipped), every panel
  of the committed Grafana dashboard returns data, and every metric every alert names
  has data and every alert expression evaluates;
- the same check reports a panel (and an alert) naming a metric nobody exports.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from longtask_contracts import names
from longtask_dev import binaries, dashboard
from longtask_dev import platform as platform_mod
from tests import helpers, lt, prom, promql

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not prom.available(), reason="needs Debian's prometheus (hack/setup.sh installs it)"),
]
RULES = binaries.REPO_ROOT / "charts" / "longtask" / "files" / "alerts" / "longtask.rules.yaml"
DLQ_ALERT = "LongTaskDeadLetterQueueGrowing"
OBS_POOL = "obs"
SCHEDULE = "obs-every-2s"


@pytest.fixture(scope="module")
def obs_worker(platform: platform_mod.Platform) -> Iterator[str]:
    """A worker of its own pool with 2 s leases: a crashed attempt is dead-lettered in
    seconds. Yields its scrape target (host:port)."""
    worker = platform.start_worker(
        pool=OBS_POOL,
        concurrency=2,
        tasks="longtask_worker.tasks.demo",
        extra_env={"LONGTASK_LEASE_SECONDS": "2"},
    )
    yield urlsplit(platform.worker_metrics_urls[-1]).netloc
    if worker in platform.cluster.children:
        platform.stop_child(worker)


@pytest.fixture(scope="module")
def prometheus(
    platform: platform_mod.Platform, obs_worker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[prom.Prometheus]:
    server = prom.Prometheus(
        workdir=tmp_path_factory.mktemp("prometheus"),
        jobs={
            "longtask-operator": [platform.operator_metrics_url],
            "longtask-api": [f"{platform.api_url}/metrics"],
            "longtask-worker": list(platform.worker_metrics_urls),
        },
        rule_files=[RULES],
    ).start()
    helpers.poll(server.targets_up, timeout=60, what="every target up in Prometheus")
    yield server
    server.stop()


def _states(server: prom.Prometheus) -> set[str]:
    return {alert["state"] for alert in server.alerts(DLQ_ALERT)}


def test_dlq_alert_goes_pending_then_firing_then_resolves_after_replay(
    platform: platform_mod.Platform,
    kubectl: Any,
    namespace: str,
    prometheus: prom.Prometheus,
    obs_worker: str,
    tmp_path: Path,
) -> None:
    helpers.poll(
        lambda: promql.query(prometheus.url, "longtask_dlq_depth"),
        timeout=30,
        what="a first DLQ depth sample",
    )
    assert not prometheus.alerts(DLQ_ALERT), "the DLQ alert fires before anything was dead-lettered"
    fixed = tmp_path / "fixed"  # demo.crash succeeds once this file exists
    crashed = ["crash-a", "crash-b"]
    for name in crashed:
        lt.create(
            kubectl,
            namespace,
            name,
            task="demo.crash",
            params={"unless_exists": str(fixed)},
            pool=OBS_POOL,
            retry={"maxRetries": 0},
        )
    for name in crashed:
        assert lt.wait_phase(kubectl, namespace, name, "Failed", timeout=60)["deadLettered"] is True

    helpers.poll(lambda: "pending" in _states(prometheus), timeout=30, what=f"{DLQ_ALERT} pending")
    firing = helpers.poll(
        lambda: [a for a in prometheus.alerts(DLQ_ALERT) if a["state"] == "firing"],
        timeout=120,
        what=f"{DLQ_ALERT} firing",
        interval=1,
    )
    assert firing[0]["labels"]["severity"] == "warning"
    assert firing[0]["annotations"]["runbook_url"].endswith("runbook.md#longtaskdeadletterqueuegrowing")

    fixed.touch()
    replayed = httpx.post(f"{platform.api_url}/v1/deadletters/replay", params={"namespace": namespace})
    assert replayed.status_code == 202, replayed.text
    assert sorted(item["name"] for item in replayed.json()["items"]) == crashed
    for name in crashed:
        lt.wait_phase(kubectl, namespace, name, "Succeeded", timeout=60)
    helpers.poll(lambda: not prometheus.alerts(DLQ_ALERT), timeout=60, what=f"{DLQ_ALERT} to resolve")

    # The worker processes demo.crash killed were swept: no busy slot is left behind,
    # while the attempts they ran still count (2 crashed, 2 replayed).
    slots = f'longtask_worker_busy_slots{{instance="{obs_worker}"}} == 0'
    helpers.poll(lambda: promql.query(prometheus.url, slots), timeout=30, what="0 busy slots")
    attempts = f'sum(longtask_worker_attempts_total{{instance="{obs_worker}",task="demo.crash"}}) == 4'
    helpers.poll(lambda: promql.query(prometheus.url, attempts), timeout=30, what="4 attempts counted")


def _schedule(kubectl: Any, namespace: str) -> None:
    """A schedule every 2 s whose 3 s runs (on the platform's default pool) succeed, with
    Forbid: its runs are created and succeed, and the times they outlast are skipped
    (missed), so every schedule series has data. Its runs need the operator's schedule
    controller."""
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.SCHEDULE_KIND,
        "metadata": {"name": SCHEDULE},
        "spec": {
            "schedule": "@every 2s",
            "concurrencyPolicy": "Forbid",
            "template": {"spec": {"task": "demo.sleep", "params": {"seconds": 3, "steps": 1}}},
        },
    }
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))


def _load(platform: platform_mod.Platform, kubectl: Any, namespace: str) -> None:
    """Work of every kind: sleeps (queued behind each other), failures with a retry, two
    batches (items that succeed; items retried, then failed), an SSE stream followed to
    its end, an idle WorkerPool (replicas and desired replicas) and a schedule."""
    _schedule(kubectl, namespace)
    pool = f"idle-{uuid.uuid4().hex[:6]}"
    platform.apply_worker_pool(
        platform_mod.worker_pool_manifests(pool=pool, min_replicas=0, max_replicas=1), namespace=namespace
    )
    created = []
    # On the observed worker's own pool: its metrics are scraped, and no other test's
    # leftovers compete for its slots.
    retry = {"maxRetries": 1, "backoffSeconds": 0.1}
    specs = [{"task": "demo.sleep", "pool": OBS_POOL, "params": {"seconds": 2, "steps": 4}}] * 4 + [
        {"task": "demo.fail", "pool": OBS_POOL, "retry": retry}
    ] * 2
    # Two batches: items that succeed, and items that are retried, then fail for good.
    batches = [
        {"task": "demo.sleep", "pool": OBS_POOL, "params": {"steps": 1}, "items": [{"seconds": 0.2}] * 6},
        {"task": "demo.fail", "pool": OBS_POOL, "retry": retry, "items": [{"message": "item"}] * 2},
    ]
    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        for spec in specs:
            answer = client.post(f"/v1/namespaces/{namespace}/tasks", json={"spec": spec})
            assert answer.status_code == 202, answer.text
            created.append(answer.json()["name"])
        events = list(helpers.sse_events(client, f"/v1/namespaces/{namespace}/tasks/{created[0]}/events"))
        assert events[-1].event == "succeeded"
        for spec in batches:
            answer = client.post(f"/v1/namespaces/{namespace}/tasks", json={"spec": spec})
            assert answer.status_code == 202, answer.text
            created.append(answer.json()["name"])
    for name, phase in zip(
        created, ["Succeeded"] * 4 + ["Failed"] * 2 + ["Succeeded", "Failed"], strict=True
    ):
        lt.wait_phase(kubectl, namespace, name, phase, timeout=120)


def _no_problems(server: prom.Prometheus, expressions: list[promql.Expression]) -> list[str]:
    """Poll until every expression has data (rates need two scrapes); the last problems."""
    last: list[str] = []

    def clean() -> bool:
        nonlocal last
        last = promql.problems(server.url, expressions)
        return not last

    with contextlib.suppress(AssertionError):
        helpers.poll(clean, timeout=60, what="every expression to return data", interval=1)
    return last


def test_every_panel_and_alert_expression_returns_data_under_load(
    platform: platform_mod.Platform, kubectl: Any, namespace: str, prometheus: prom.Prometheus
) -> None:
    try:
        _load(platform, kubectl, namespace)
        board = promql.load_dashboard(dashboard.OUTPUT)
        expressions = promql.dashboard_expressions(board) + promql.rule_expressions(RULES)
        assert len(expressions) >= 20
        assert _no_problems(prometheus, expressions) == []
    finally:  # its runs would keep a slot of the shared default pool busy
        kubectl("delete", "-n", namespace, f"{names.SCHEDULE_PLURAL}/{SCHEDULE}", check=False)


def test_the_check_reports_a_panel_naming_a_metric_nobody_exports(prometheus: prom.Prometheus) -> None:
    board = promql.load_dashboard(dashboard.OUTPUT)
    board["panels"].append(
        {
            "title": "Injected",
            "type": "timeseries",
            "targets": [{"expr": "sum(longtask_no_such_metric_total)"}],
        }
    )
    injected_alert = promql.Expression("alert Injected", "rate(longtask_no_such_events_total[5m]) > 1", False)
    expressions = [*promql.dashboard_expressions(board), injected_alert]
    found = promql.problems(prometheus.url, expressions)
    assert "panel 'Injected': no data from sum(longtask_no_such_metric_total)" in found
    assert any(p.startswith("alert Injected: no data from longtask_no_such_events_total") for p in found), (
        found
    )
