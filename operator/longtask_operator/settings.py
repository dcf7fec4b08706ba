"""Operator settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O."""

from __future__ import annotations

import functools
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGTASK_", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # At most one status patch per task per this many seconds; every event still reaches SSE.
    status_interval_seconds: float = 1.0
    # Status patches in flight at once: the operator's share of the apiserver when creates
    # arrive as fast (docs/benchmarks.md: 16 let a 2,000-task burst's statuses trail by 6.6 s).
    status_writers: int = Field(default=64, ge=1)
    # The consumer name in the status stream's group; unacked entries of a restarted
    # operator with the same name are read again, so nothing is lost.
    consumer: str = Field(default_factory=socket.gethostname)
    metrics_port: int = 0  # 0: no metrics server
    metrics_host: str = "127.0.0.1"  # the chart sets 0.0.0.0 so Prometheus and probes reach it
    # How often queue depths, oldest queued ages and the status sync's lag are read for metrics.
    metrics_interval_seconds: float = 1.0
    # Kopf's liveness endpoint (GET /healthz), served by the operator's own event loop: a
    # wedged loop or a dead background loop fails it. 0: none.
    health_port: int = 0
    health_host: str = "127.0.0.1"
    # How often the maintenance loop looks for dead workers, due retries, deadlines, TTLs.
    maintenance_tick_seconds: float = 0.5
    # The namespaces whose LongTasks this operator runs, comma-separated (patterns such as
    # `team-*` and `!kube-system` allowed); empty: all. `longtask operator -n NS` sets it.
    namespaces: str = ""
    # How often the task sweep looks for first attempts never sent and for tasks whose
    # LongTask was deleted while the operator was away (taskwatch.py).
    sweep_seconds: float = 15.0
    # How often the autoscaler re-decides without a Queued event (cooldowns, finished work).
    autoscale_interval_seconds: float = 1.0
    # A message a worker fetched but never claimed for this long is sent again: its worker
    # died between the two (the claim makes a second copy harmless if it did not).
    claim_timeout_seconds: float = 15.0
    # Attempts in a row whose worker died before the task is dead-lettered as poison.
    poison_crashes: int = 3
    # Seconds any one Kubernetes API request may take: a hung connection must not wedge a loop.
    kube_timeout_seconds: float = 15.0

    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]


@functools.cache
def get_settings() -> OperatorSettings:
    return OperatorSettings()
