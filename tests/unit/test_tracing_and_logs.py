"""The shared tracing and log helpers, alone (longtask_contracts.tracing, .logs).

Covers: which exporters the OTEL_* variables turn on (none without an endpoint, none with
OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none, console without one); the W3C carrier of
the current span, its trip through LongTask annotations and its trace id; a span whose
parent is a carrier continues that trace, an empty carrier starts a new one; JSON log
lines carry the fields of the innermost task() block, fields added by update(), the
current span's trace id, and for a Kopf per-object line the fields last seen for its uid;
the Dispatch of an attempt says what its log lines carry; the gateway's access lines name
the task of the request's path.
"""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk import trace as sdk_trace

from longtask_api import accesslog
from longtask_contracts import ledger, logs, models, tracing

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        (ENDPOINT, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, []),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
    ],
)
def test_exporters_come_from_the_standard_variables(environ: dict[str, str], exporters: list[str]) -> None:
    assert tracing.exporters_from_env(environ) == exporters


def test_setup_without_an_endpoint_installs_nothing() -> None:
    assert tracing.setup("longtask-test", environ={}) is False


@pytest.fixture
def tracer() -> trace.Tracer:
    """An SDK tracer that is not the global one (the tests must not install a provider)."""
    return sdk_trace.TracerProvider().get_tracer("test")


def test_carrier_travels_through_annotations(tracer: trace.Tracer) -> None:
    assert tracing.inject() == {}
    with tracer.start_as_current_span("create") as span:
        carrier = tracing.inject()
    ids = span.get_span_context()
    annotations = tracing.to_annotations(carrier)
    assert set(annotations) == {"longtask.io/traceparent"}
    assert tracing.from_annotations({**annotations, "other": "x"}) == carrier
    assert tracing.from_annotations(None) == {}
    assert tracing.trace_id(carrier) == trace.format_trace_id(ids.trace_id)
    assert tracing.trace_id({}) is None


def test_a_span_continues_its_parent_carrier_or_starts_a_trace() -> None:
    parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracing.span("child", parent=parent):  # the API's no-op tracer keeps the parent's ids
        assert tracing.current_trace_id() == "0af7651916cd43dd8448eb211c80319c"
        assert tracing.inject()["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
        with tracing.span("root", parent={}):
            assert tracing.current_trace_id() is None


def _line(record_logger: logging.Logger, message: str, **extra: object) -> dict[str, object]:
    record = record_logger.makeRecord(
        record_logger.name, logging.INFO, __file__, 1, message, (), None, extra=extra
    )
    logs.TaskFields().filter(record)
    parsed: dict[str, object] = json.loads(logs.JsonFormatter().format(record))
    return parsed


def test_json_lines_carry_the_task_they_are_about(tracer: trace.Tracer) -> None:
    logger = logging.getLogger("longtask_test")
    assert "namespace" not in _line(logger, "no task")
    with logs.task(namespace="ns", name="t", uid="u-1"):
        logs.update(attempt=2)
        line = _line(logger, "about t")
        with tracer.start_as_current_span("attempt") as span:
            traced = _line(logger, "traced")
    assert (line["namespace"], line["name"], line["uid"], line["attempt"]) == ("ns", "t", "u-1", 2)
    assert line["message"] == "about t" and line["level"] == "INFO" and "trace_id" not in line
    assert traced["trace_id"] == trace.format_trace_id(span.get_span_context().trace_id)
    kopf = _line(
        logger, "Handler 'reconcile' succeeded.", k8s_ref={"namespace": "ns", "name": "t", "uid": "u-1"}
    )
    assert (kopf["name"], kopf["attempt"]) == ("t", 2)


def test_a_dispatch_says_what_its_lines_carry() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    dispatch = ledger.Dispatch(
        namespace="ns",
        name="t",
        uid="u",
        spec=models.LongTaskSpec(task="demo.noop"),
        attempt=3,
        deadline=0,
        trace={"traceparent": parent},
    )
    assert dispatch.about() == {
        "namespace": "ns",
        "name": "t",
        "uid": "u",
        "attempt": 3,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
    }
    assert dispatch.next().trace == dispatch.trace  # later attempts stay in the trace
    assert ledger.Dispatch.model_validate_json(dispatch.model_dump_json()).trace == dispatch.trace


@pytest.mark.parametrize(
    ("path", "task"),
    [
        ("/v1/namespaces/ns/tasks/t-1/events?after=0-0", {"namespace": "ns", "name": "t-1"}),
        ("/v1/namespaces/ns/tasks", {"namespace": "ns"}),
        ("/healthz", None),
    ],
)
def test_access_lines_name_the_task_of_their_path(path: str, task: dict[str, str] | None) -> None:
    logger = logging.getLogger("uvicorn.access")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("ip", "GET", path, "1.1", 200),
        None,
    )
    accesslog.TaskPath().filter(record)
    assert getattr(record, "longtask_task", None) == task
    line = json.loads(logs.JsonFormatter().format(record))
    assert {k: line[k] for k in ("namespace", "name") if k in line} == (task or {})
