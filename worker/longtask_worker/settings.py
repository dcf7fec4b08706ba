"""Worker settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O."""

from __future__ import annotations

import functools
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from longtask_runtime import celeryconfig


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGTASK_", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    pool: str = "default"
    # Comma-separated modules that register tasks with @sdk.task. A worker serves only
    # these: the built-in ones are named like any other (longtask_worker.tasks.demo, .docs,
    # .agent), so a production worker never offers demo.crash or file access by default.
    task_modules: str = ""
    # The folder tasks may read and write files in (sdk.confine); empty: no file access.
    files_root: str = ""
    concurrency: int = 2
    # The pod this worker runs in (the chart sets it from the downward API): the operator
    # then knows which pods are busy and scales down idle ones only. Default: the host name.
    pod_name: str = Field(default_factory=socket.gethostname)
    # A running attempt holds a lease this long; a heartbeat renews it every third of it.
    lease_seconds: float = 30.0
    # Redis' visibility timeout: how long an unacked message waits before Redis redelivers
    # it. Liveness comes from the lease, so this only needs to exceed the longest task.
    visibility_timeout_seconds: int = celeryconfig.VISIBILITY_TIMEOUT_SECONDS
    # How often a worker sweeps for messages whose visibility timeout ran out.
    restore_interval_seconds: int = celeryconfig.RESTORE_INTERVAL_SECONDS
    result_max_bytes: int = 16 * 1024
    # How long a running task may ignore cancellation before its process is stopped.
    cancel_grace_seconds: float = 30.0
    # Prometheus /metrics of this worker, served by Celery's main process for all its
    # children (exposition.py); 0: none. The chart sets the host to 0.0.0.0.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # The multiprocess directory (emptied at start); default: one per worker under /tmp.
    metrics_dir: str = ""

    def module_list(self) -> list[str]:
        return [m.strip() for m in self.task_modules.split(",") if m.strip()]


@functools.cache
def get_settings() -> WorkerSettings:
    return WorkerSettings()
