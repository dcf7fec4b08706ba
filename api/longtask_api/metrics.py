"""The gateway's Prometheus metrics (definitions only; /metrics is served by routes/health.py).

Labels are bounded: `route` is a route template (or "unmatched"), never a raw path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from longtask_contracts import buckets

TASKS_CREATED = Counter("longtask_api_tasks_created_total", "LongTasks created through the gateway.")
DISPATCHED = Counter(
    "longtask_api_dispatched_total",
    "First attempts of LongTasks the gateway created that it sent to Celery itself (else the operator did).",
)
DISPATCH_FAILURES = Counter(
    "longtask_api_dispatch_failures_total",
    "First sends that failed in the gateway (Redis or the broker); the operator sends those tasks.",
)
DISPATCH_LEFT = Counter(
    "longtask_api_dispatch_left_total",
    "First attempts the gateway left to the operator (it sent first, or the queue was full).",
)
# livesum: with --processes N, the streams of the live processes summed (serve.py).
SSE_STREAMS = Gauge(
    "longtask_api_sse_streams", "Server-Sent Event streams open right now.", multiprocess_mode="livesum"
)
SSE_EVENTS = Counter("longtask_api_sse_events_total", "Events sent over Server-Sent Events.")
REQUEST_DURATION = Histogram(
    "longtask_api_request_duration_seconds",
    "Seconds from a request's arrival to its response headers, by route template, method and status.",
    ["route", "method", "status"],
    buckets=buckets.SECONDS,
)
