"""Worker settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O.

Each field's docstring is its documentation (docs/settings.md is generated from it)."""

from __future__ import annotations

import functools
import socket

from pydantic import Field

from longtask_runtime import celeryconfig, settings


class WorkerSettings(settings.Base):
    pool: str = "default"
    """The worker pool this worker serves: it consumes the queue `longtask.<pool>`."""

    task_modules: settings.CommaList = Field(default_factory=list)
    """Python modules that register tasks with @sdk.task, comma-separated. A worker serves only
    these: the built-in ones are named like any other (longtask_worker.tasks.demo, .docs,
    .agent), so a production worker never offers demo.crash or file access by default."""

    files_root: str = ""
    """The folder tasks may read and write files in (ctx.open opens beneath it, never through a
    link out of it: sdk.open_beneath); empty: no file access."""

    concurrency: int = 2
    """Tasks one worker runs at once (its prefork processes). The autoscaler reads it from a pool's
    pod template too (a plain `value`, or --concurrency), to know what one pod carries."""

    pod_name: str = Field(
        default_factory=socket.gethostname,
        json_schema_extra=settings.shown("the host name"),
    )
    """The pod this worker runs in (the chart sets it from the downward API): the operator then
    knows which pods are busy and scales down idle ones only."""

    lease_seconds: float = 30.0
    """Seconds a running attempt's lease lasts; a heartbeat renews it every third of it, and a dead
    worker's task is re-queued about this long after it died."""

    visibility_timeout_seconds: int = celeryconfig.VISIBILITY_TIMEOUT_SECONDS
    """Seconds an unacknowledged message waits before Redis redelivers it (Celery's visibility
    timeout). Liveness comes from the lease, so this only needs to exceed the longest task; a
    redelivered message is harmless."""

    restore_interval_seconds: int = celeryconfig.RESTORE_INTERVAL_SECONDS
    """Seconds between a worker's sweeps for messages whose visibility timeout ran out."""

    result_max_bytes: int = 16 * 1024
    """Largest result a task may return, in bytes of JSON; a larger one fails the task permanently
    (store large outputs elsewhere and return a reference)."""

    cancel_grace_seconds: float = 30.0
    """Seconds a running task may ignore cancellation before its process is stopped."""

    metrics_port: int = 0
    """Port of this worker's Prometheus /metrics, served by Celery's main process for all its
    children; 0: none."""

    metrics_host: str = "127.0.0.1"
    """Address the metrics server listens on; the chart sets 0.0.0.0."""

    health_stale_seconds: float = 60.0
    """Seconds the consumer's event loop in the worker's main process may go without a tick before
    GET /healthz on the metrics port fails (503); it ticks every quarter of this. Paused while the
    consumer is stopped (reconnecting to Redis, warm shutdown), never affected by busy tasks."""

    metrics_dir: str = ""
    """prometheus-client's multiprocess directory (PROMETHEUS_MULTIPROC_DIR), emptied at start;
    empty: one per worker under the temporary directory."""

    def module_list(self) -> list[str]:
        return list(self.task_modules)


@functools.cache
def get_settings() -> WorkerSettings:
    return WorkerSettings()
