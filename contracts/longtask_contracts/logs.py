"""Log lines of every component: human-readable by default, one JSON object per line with
LONGTASK_LOG_FORMAT=json, and the task a line is about (namespace, name, uid, attempt,
trace id) on each line written while that task is handled.

Code that handles a task opens `with logs.task(...)`; a filter on the handler reads that
context variable (and the current span) when a record is emitted. It configures logging
only when a component's entry point calls configure(); nothing happens at import.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import datetime
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from longtask_contracts import envvars, tracing

FORMAT_ENV = "LONGTASK_LOG_FORMAT"
ENVIRONMENT = (
    envvars.Variable(
        name=FORMAT_ENV,
        default="text",
        description="`json`: every log line is one JSON object, with the task it is about (namespace, "
        "name, uid, attempt, trace id); anything else: human-readable text. `longtask dev up` passes "
        "its shell's value on to every process and pod it starts.",
        readers=(envvars.GATEWAY, envvars.OPERATOR, envvars.WORKER, envvars.DEVTOOLS),
    ),
)
FIELDS = ("namespace", "name", "uid", "attempt", "trace_id", "span_id")

_task: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("longtask_task", default=None)
# The fields of the last task() block of each uid, for lines that only name the object
# (Kopf's own "Handler ... succeeded"): bounded, the oldest forgotten first.
_recent: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
_RECENT_MAX = 4096


@contextlib.contextmanager
def task(**fields: Any) -> Iterator[dict[str, Any]]:
    """Within this block every log line is about this task (namespace, name, uid, attempt;
    trace_id for a task whose trace is known but not current). update() adds fields later."""
    current = {k: v for k, v in fields.items() if v is not None}
    token = _task.set(current)
    try:
        yield current
    finally:
        _task.reset(token)
        if "trace_id" not in current and (trace_id := tracing.current_trace_id()):
            current["trace_id"] = trace_id  # a trace begun within the block
        if current.get("uid"):
            _recent[current["uid"]] = current
            _recent.move_to_end(current["uid"])
            while len(_recent) > _RECENT_MAX:
                _recent.popitem(last=False)


def update(**fields: Any) -> None:
    """Add to the fields of the innermost task() block (once a step learnt which task it is)."""
    current = _task.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def fields(record: logging.LogRecord | None = None) -> dict[str, Any]:
    """The task fields of a line: the task() block's, Kopf's object reference, the current span."""
    found: dict[str, Any] = {}
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, Mapping):  # a Kopf handler's per-object logger
        found.update(_recent.get(str(ref.get("uid")), {}))
        found.update({k: ref[k] for k in ("namespace", "name", "uid") if ref.get(k)})
    found.update(getattr(record, "longtask_task", None) or {})  # a component's filter knew the task
    found.update(_task.get() or {})
    trace_id, span_id = tracing.current_trace_id(), tracing.current_span_id()
    if trace_id:
        found.update(trace_id=trace_id, span_id=span_id)
    return found


class TaskFields(logging.Filter):
    """Puts the task fields on each record (record.longtask) for the JSON formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.longtask = fields(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the task fields, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        line.update(getattr(record, "longtask", None) or fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def wants_json(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(FORMAT_ENV, "").strip().lower() == "json"


def configure(*, text_format: str | None, level: int = logging.INFO) -> bool:
    """Set up the root logger: JSON lines if LONGTASK_LOG_FORMAT=json (replacing any handler,
    Kopf's included), else `text_format` (None: keep what the component set up). Returns
    whether the output is JSON."""
    root = logging.getLogger()
    if wants_json():
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler.addFilter(TaskFields())
        root.handlers[:] = [handler]
        root.setLevel(level)
        logging.captureWarnings(True)  # warnings become JSON lines too
        return True
    if text_format is not None:
        logging.basicConfig(level=level, format=text_format)
    return False
