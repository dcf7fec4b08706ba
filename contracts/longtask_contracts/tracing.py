"""OpenTelemetry for every component: a tracer provider set up from the standard OTEL_*
environment, W3C trace-context carriers (annotations, Celery headers, the Dispatch body)
and the span attributes of a task.

Nothing happens at import: a component calls setup() once per process (each Celery
prefork child on its own), and without an OTLP endpoint (or with OTEL_SDK_DISABLED=true,
or OTEL_TRACES_EXPORTER=none) nothing is exported and no SDK is installed. Spans then
come from the API's no-op tracer, which still passes a parent's context on, so a trace
begun by a component that exports is not broken by one that does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from longtask_contracts import envvars, names

log = logging.getLogger(__name__)
_EVERY = (envvars.GATEWAY, envvars.OPERATOR, envvars.WORKER, envvars.DEVTOOLS)
_DEV_UP = " `longtask dev up` passes its shell's OTEL_* on to every process and pod it starts."
# The standard variables setup() reads itself; the SDK and the exporter read the rest.
ENVIRONMENT = (
    envvars.Variable(
        name="OTEL_EXPORTER_OTLP_ENDPOINT",
        default="",
        description="Where spans go, OTLP over HTTP/protobuf, e.g. `http://otel-collector:4318`; unset: no "
        "spans are exported (unless OTEL_TRACES_EXPORTER=console)." + _DEV_UP,
        readers=_EVERY,
    ),
    envvars.Variable(
        name="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        default="",
        description="The same for traces only (the full URL, with /v1/traces); it wins over "
        "OTEL_EXPORTER_OTLP_ENDPOINT.",
        readers=_EVERY,
    ),
    envvars.Variable(
        name="OTEL_TRACES_EXPORTER",
        default="otlp",
        description="Comma-separated: `otlp` (needs an endpoint), `console` (spans to stdout), `none`.",
        readers=_EVERY,
    ),
    envvars.Variable(
        name="OTEL_SDK_DISABLED",
        default="false",
        description="`true`: no spans are exported, whatever else is set.",
        readers=_EVERY,
    ),
    envvars.Variable(
        name="OTEL_SERVICE_NAME",
        default="the component's: longtask-api, longtask-operator or longtask-worker",
        literal=False,
        description="The service name on every span (also taken from service.name in "
        "OTEL_RESOURCE_ATTRIBUTES); the default names the component.",
        readers=_EVERY,
    ),
    envvars.Variable(
        name="OTEL_*",
        default="",
        description="The SDK's other standard variables: OTEL_RESOURCE_ATTRIBUTES, "
        "OTEL_TRACES_SAMPLER(_ARG), "
        "OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _CERTIFICATE / _COMPRESSION, OTEL_BSP_* "
        "(docs/observability.md).",
        readers=_EVERY,
    ),
)
TRACER = "longtask"
# The W3C fields that travel: traceparent (trace id, parent span id, sampled flag), tracestate.
FIELDS = ("traceparent", "tracestate")
_provider: Any = None  # the SDK TracerProvider this process installed, if any


def exporters_from_env(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the OTEL_* variables ask for: "otlp" (only with an endpoint) and
    "console"; none when the SDK is disabled. Pure, for tests."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    wanted = [e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    chosen = []
    if "otlp" in wanted and endpoint:
        chosen.append("otlp")
    if "console" in wanted:
        chosen.append("console")
    return chosen


def setup(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install a TracerProvider exporting as OTEL_* says; `service` names the component
    unless OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does. Returns
    whether spans are exported. Call once per process, after any fork."""
    global _provider
    environ = os.environ if environ is None else environ
    chosen = exporters_from_env(environ)
    if not chosen or _provider is not None:
        return _provider is not None
    from opentelemetry.sdk import resources
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace import export

    resource = resources.Resource.create()
    if str(resource.attributes.get(resources.SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(resources.Resource({resources.SERVICE_NAME: service}))
    provider = sdk_trace.TracerProvider(resource=resource)
    for name in chosen:
        exporter: export.SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # endpoint, headers, timeout, TLS: OTEL_EXPORTER_OTLP_*
        else:
            exporter = export.ConsoleSpanExporter()
        provider.add_span_processor(export.BatchSpanProcessor(exporter))  # OTEL_BSP_* tune it
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing: exporting spans of %s (%s)", resource.attributes.get(resources.SERVICE_NAME), chosen)
    return True


def shutdown() -> None:
    """Export what is buffered and stop: before a process ends (prefork children end with
    os._exit, which skips atexit)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def inject() -> dict[str, str]:
    """The current context as a W3C carrier ({} when there is no valid span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in FIELDS}


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The context a carrier holds; None (a new trace) for an empty or missing one."""
    if not carrier or "traceparent" not in carrier:
        return None
    return propagate.extract(dict(carrier))


def to_annotations(carrier: Mapping[str, str]) -> dict[str, str]:
    """A carrier as LongTask annotations (longtask.io/traceparent, longtask.io/tracestate)."""
    return {names.TRACE_ANNOTATION_PREFIX + k: v for k, v in carrier.items() if k in FIELDS and v}


def from_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The carrier a LongTask's annotations hold ({} for a LongTask made without one, e.g. by kubectl)."""
    found = {k: (annotations or {}).get(names.TRACE_ANNOTATION_PREFIX + k) for k in FIELDS}
    return {k: v for k, v in found.items() if v}


def trace_id(carrier: Mapping[str, str] | None) -> str | None:
    """The trace id (32 hex digits) of a carrier's traceparent, if it has one."""
    parts = (carrier or {}).get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def task_attributes(
    *, namespace: str, name: str, uid: str, attempt: int | None = None, task: str = "", pool: str = ""
) -> dict[str, str | int]:
    """The span attributes that say which LongTask (and attempt) a span is about."""
    attributes: dict[str, str | int] = {
        "longtask.namespace": namespace,
        "longtask.name": name,
        "longtask.uid": uid,
    }
    if attempt is not None:
        attributes["longtask.attempt"] = attempt
    if task:
        attributes["longtask.task"] = task
    if pool:
        attributes["longtask.pool"] = pool
    return attributes


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[trace.Span]:
    """A current span, child of `parent` (a carrier) if given, else of the current context."""
    ctx = None if parent is None else extract(parent) or otel_context.Context()  # {}: a new trace
    with tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=attributes) as current:
        yield current


def failed(exc: BaseException) -> None:
    """Mark the current span failed by `exc` (caught exceptions do not reach the span)."""
    current = trace.get_current_span()
    current.record_exception(exc)
    current.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def current_trace_id() -> str | None:
    """The trace id of the current span (also a remote parent's, under the no-op tracer)."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def current_span_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return trace.format_span_id(ctx.span_id) if ctx.is_valid else None
