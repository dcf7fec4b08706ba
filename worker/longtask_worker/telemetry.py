"""Tracing in Celery's process lifecycle: each prefork child sets up its own tracer provider
(its export thread cannot survive a fork) and Celery's official instrumentation, and
exports what it buffered before it ends.

It must not run tasks nor read settings: OTEL_* variables configure everything (tracing.py).
"""

from __future__ import annotations

from typing import Any

from celery import signals

from longtask_contracts import tracing

SERVICE = "longtask-worker"


def _child_started(**_: Any) -> None:
    if tracing.setup(SERVICE):
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        # Its span `run/longtask.run` continues the operator's dispatch span from the
        # message headers; runner.py's `longtask.attempt` is its child.
        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]


def _child_ending(**_: Any) -> None:
    tracing.shutdown()  # the child leaves with os._exit: atexit would not run


def connect() -> None:
    """Connect the handlers once per process (Celery's signals are global)."""
    signals.worker_process_init.connect(_child_started, weak=False, dispatch_uid="longtask-tracing-init")
    signals.worker_process_shutdown.connect(_child_ending, weak=False, dispatch_uid="longtask-tracing-end")
