"""The chart's telemetry block: traces and log format of every component.

Covers: by default no telemetry variable is set (text logs, no OTLP endpoint, so no span
exported); `telemetry.logFormat=json`, `telemetry.otlpEndpoint` (with each component's
service name: `longtask-operator`, `-api`, `-worker`) and `telemetry.extraEnv` reach the
operator, the gateway and every worker pool; the schema refuses a log format it does not
know and an endpoint that is not a URL.
"""

from __future__ import annotations

import pytest

from tests.integration.test_chart import CHART, Helm, container, env, helm, one, render

__all__ = ["helm"]  # the fixture, shared with test_chart.py

DEPLOYMENTS = {
    "lt-longtask-operator": "operator",
    "lt-longtask-api": "api",
    "lt-longtask-worker-default": "worker",
}


def test_default_sets_no_telemetry_variable(helm: Helm) -> None:
    manifests = render(helm)
    for deployment, component in DEPLOYMENTS.items():
        variables = env(container(one(manifests, "Deployment", deployment)))
        assert not {v for v in variables if v.startswith("OTEL_") or v == "LONGTASK_LOG_FORMAT"}, component


def test_json_logs_and_an_otlp_endpoint_reach_every_component(helm: Helm) -> None:
    manifests = render(
        helm,
        "--set", "telemetry.logFormat=json",
        "--set", "telemetry.otlpEndpoint=http://otel-collector.monitoring:4318",
        "--set", "telemetry.extraEnv[0].name=OTEL_TRACES_SAMPLER",
        "--set", "telemetry.extraEnv[0].value=parentbased_always_on",
    )  # fmt: skip
    for deployment, component in DEPLOYMENTS.items():
        variables = env(container(one(manifests, "Deployment", deployment)))
        assert variables["LONGTASK_LOG_FORMAT"] == "json"
        assert variables["OTEL_SERVICE_NAME"] == f"longtask-{component}"
        assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
        assert variables["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"


@pytest.mark.parametrize(
    ("setting", "field"),
    [("telemetry.logFormat=xml", "logFormat"), ("telemetry.otlpEndpoint=collector:4318", "otlpEndpoint")],
)
def test_schema_refuses_bad_telemetry_values(helm: Helm, setting: str, field: str) -> None:
    result = helm("template", "lt", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert field in result.stderr
