"""The chart's monitoring objects: PodMonitors, the PrometheusRule and the dashboard ConfigMap.

Covers: all three off by default (only the workers' metrics port and env are rendered);
when on, one PodMonitor per component (operator, worker, gateway) on the port serving
/metrics, with the job names the alerting rules expect and `additionalLabels`; a
PrometheusRule whose spec is exactly files/alerts/longtask.rules.yaml, with
`additionalLabels`; a ConfigMap labelled `grafana_dashboard: "1"` holding exactly
files/dashboards/longtask.json, with its annotations; worker metrics port 0 renders no port.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtask_dev import binaries

CHART = binaries.REPO_ROOT / "charts" / "longtask"


@pytest.fixture(scope="module")
def helm_template(tmp_path_factory: pytest.TempPathFactory, go_tool: Callable[[str], Path]) -> Any:
    binary = go_tool("helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {"HOME": str(home), "HELM_CONFIG_HOME": str(home / "c"), "HELM_CACHE_HOME": str(home / "k")}

    def render(*args: str) -> list[dict[str, Any]]:
        out = subprocess.run(
            [str(binary), "template", "lt", str(CHART), "--namespace", "jobs", *args],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]

    return render


def _kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def test_off_by_default_but_workers_serve_metrics(helm_template: Any) -> None:
    default = helm_template()
    assert not [m for m in default if m["kind"] in ("PodMonitor", "PrometheusRule", "ConfigMap")]
    worker = next(m for m in default if m["metadata"]["name"] == "lt-longtask-worker-default")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9808, "protocol": "TCP"}]
    off = helm_template("--set", "workers.poolDefaults.metrics.port=0")
    worker = next(m for m in off if m["metadata"]["name"] == "lt-longtask-worker-default")
    assert "ports" not in worker["spec"]["template"]["spec"]["containers"][0]


def test_podmonitors_prometheusrule_and_dashboard(helm_template: Any) -> None:
    manifests = helm_template(
        "--set", "metrics.podMonitor.enabled=true",
        "--set", "metrics.prometheusRule.enabled=true",
        "--set", "metrics.dashboards.enabled=true",
        "--set-json", 'metrics.podMonitor.additionalLabels={"release": "kps"}',
        "--set-json", 'metrics.prometheusRule.additionalLabels={"release": "kps"}',
        "--set-json", 'metrics.dashboards.annotations={"grafana_folder": "longtask"}',
    )  # fmt: skip
    monitors = {m["metadata"]["name"]: m for m in _kind(manifests, "PodMonitor")}
    assert sorted(monitors) == ["lt-longtask-api", "lt-longtask-operator", "lt-longtask-worker"]
    for component, port in (("operator", "metrics"), ("worker", "metrics"), ("api", "http")):
        monitor = monitors[f"lt-longtask-{component}"]
        assert monitor["metadata"]["labels"]["release"] == "kps"
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        assert (endpoint["port"], endpoint["path"]) == (port, "/metrics")
        assert {"targetLabel": "job", "replacement": f"longtask-{component}"} in endpoint["relabelings"]
        pod = next(
            m["spec"]["template"]["spec"]
            for m in manifests
            if m["kind"] == "Deployment"
            and m["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == component
        )
        assert port in [p["name"] for p in pod["containers"][0]["ports"]]

    (rule,) = _kind(manifests, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    source = CHART / "files" / "alerts" / "longtask.rules.yaml"
    assert rule["spec"] == yaml.safe_load(source.read_text())

    (board,) = _kind(manifests, "ConfigMap")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "longtask"}
    committed = json.loads((CHART / "files" / "dashboards" / "longtask.json").read_text())
    assert json.loads(board["data"]["longtask.json"]) == committed
