"""The gateway's Prometheus metrics (definitions only; /metrics is served by app.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TASKS_CREATED = Counter("longtask_api_tasks_created_total", "LongTasks created through the gateway.")
SSE_STREAMS = Gauge("longtask_api_sse_streams", "Server-Sent Event streams open right now.")
SSE_EVENTS = Counter("longtask_api_sse_events_total", "Events sent over Server-Sent Events.")
