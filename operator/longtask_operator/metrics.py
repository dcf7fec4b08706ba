"""The operator's Prometheus metrics (definitions only; the server starts in handlers)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DISPATCHED = Counter("longtask_operator_dispatched_total", "Attempts sent to a worker queue.", ["pool"])
EVENTS = Counter("longtask_operator_events_total", "Worker events consumed from the status stream.", ["kind"])
STATUS_PATCHES = Counter("longtask_operator_status_patches_total", "LongTask status patches written.")
DLQ_DEPTH = Gauge("longtask_dlq_depth", "Tasks in the dead-letter queue.")
WORKER_LOST = Counter("longtask_operator_worker_lost_total", "Attempts whose worker stopped heartbeating.")
