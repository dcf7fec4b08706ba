"""Operator settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O.

Each field's docstring is its documentation (docs/settings.md is generated from it)."""

from __future__ import annotations

import functools
import os
import socket
from typing import Self

from pydantic import Field, model_validator

from longtask_runtime import settings


class OperatorSettings(settings.Base):
    status_interval_seconds: float = 1.0
    """Seconds between status writes of one task: at most one per interval, and the first waits it
    too unless the task has ended (a task that ends within it costs one write); a terminal
    status is written at most this long after the operator reads its event. Every event still
    reaches SSE watchers at once."""

    status_writers: int = Field(default=64, ge=1)
    """Status writes in flight at once: under a burst of creates, the operator's share of the
    apiserver. Lower it only if the apiserver's priority and fairness limits are tight (statuses
    then trail a burst for longer)."""

    consumer: str = Field(
        default_factory=socket.gethostname,
        json_schema_extra=settings.shown("the host name"),
    )
    """The operator's consumer name in the status stream's group: entries left unacknowledged by an
    operator of the same name are read again after a restart, so nothing is lost (the chart sets
    a fixed name)."""

    metrics_port: int = 0
    """Port of the operator's Prometheus /metrics; 0: no metrics server."""

    metrics_host: str = "127.0.0.1"
    """Address the metrics server listens on; the chart sets 0.0.0.0 so Prometheus and probes reach
    it."""

    metrics_interval_seconds: float = 1.0
    """Seconds between reads of queue depths, oldest queued ages and the status sync's lag for the
    metrics."""

    health_port: int = 0
    """Port of Kopf's liveness endpoint (GET /healthz), served by the operator's own event loop, so
    a wedged loop or a dead background loop fails it; 0: none."""

    health_host: str = "127.0.0.1"
    """Address the liveness endpoint listens on; the chart sets 0.0.0.0 for the kubelet's probe."""

    maintenance_tick_seconds: float = 0.5
    """Seconds between the maintenance loop's looks for dead workers (expired leases), due retries,
    deadlines and TTLs."""

    namespaces: settings.CommaList = Field(default_factory=list)
    """The namespaces whose LongTasks this operator runs, comma-separated; patterns such as
    `team-*` and `!kube-system` allowed; empty: all. `longtask operator -n NS` sets it."""

    sweep_seconds: float = 15.0
    """Seconds between task sweeps, which look for unfinished tasks whose first attempt was never
    sent and for tasks in Redis whose LongTask was deleted while the operator was away."""

    autoscale_interval_seconds: float = 1.0
    """Seconds between the autoscaler's decisions for every WorkerPool when no `queued` event
    prompts one (cooldowns, finished work)."""

    pool_status_interval_seconds: float = Field(default=15.0, ge=0)
    """Seconds between WorkerPool status writes that only update counts (queued, running, busyPods,
    replicas, condition messages): at most one per interval per pool, none while nothing changes. A
    decision (replicas changed), a spec change or a condition's status or reason is written at
    once."""

    claim_timeout_seconds: float = 15.0
    """Seconds a message a worker fetched may stay unclaimed before it is sent again: its worker
    died between the two (the claim makes a second copy harmless if it did not)."""

    redis_repair_grace_seconds: float = Field(default=20.0, ge=0)
    """Seconds the operator waits, once it found Redis restarted, failed over or emptied, before it
    sends again what Redis lost: longer than the workers' lease renewal (a third of
    LONGTASK_LEASE_SECONDS) plus a reconnect, so every running attempt has taken its lease back by
    then. Lease expiries wait meanwhile (docs/guarantees.md)."""

    poison_crashes: int = 3
    """Attempts in a row whose worker died before the task is dead-lettered as poison."""

    kube_timeout_seconds: float = 15.0
    """Seconds any one Kubernetes API request may take (a LIST page four times this), so a hung
    connection cannot wedge a loop."""

    leader_election: bool = True
    """Whether the operator runs its loops only while it holds the leader Lease
    (coordination.k8s.io/v1), so that of several operators of one scope exactly one acts and the
    others wait as standbys (docs/high-availability.md). false: it acts at once, alone; never run
    two operators of one scope so."""

    leader_lease_name: str = Field(
        default="",
        json_schema_extra=settings.shown("longtask-operator, plus -HASH of the namespaces if scoped"),
    )
    """The name of the leader Lease. By default `longtask-operator` for an operator of the whole
    cluster and `longtask-operator-<hash of its namespaces>` for one scoped to namespaces, so that
    operators of different scopes do not compete for one Lease."""

    leader_lease_namespace: str = Field(
        default="",
        json_schema_extra=settings.shown("the pod's namespace in a cluster, else default"),
    )
    """The namespace of the leader Lease (the operator needs get, create and update on leases
    there)."""

    leader_identity: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        json_schema_extra=settings.shown("<host name>-<pid>"),
    )
    """The name this operator writes into the Lease as its holderIdentity (the chart sets the pod
    name). Two operators must not share one; an operator restarted with its old identity takes its
    own Lease back at once instead of waiting it out."""

    leader_lease_seconds: int = Field(default=15, ge=1)
    """Seconds a candidate waits, after it last saw the Lease change, before it takes the Lease
    from a holder that stopped renewing it: the longest takeover after a leader dies."""

    leader_renew_deadline_seconds: float = Field(default=10.0, gt=0)
    """Seconds the leader may go without renewing the Lease before it stops leading (exits, to
    come back as a standby); shorter than the lease, so it stops before anyone may take over."""

    leader_retry_seconds: float = Field(default=2.0, gt=0)
    """Seconds between the leader's renewals, and between a standby's looks at the Lease (so a
    released Lease is taken within about this long)."""

    @model_validator(mode="after")
    def _leader_timing(self) -> Self:
        if not self.leader_retry_seconds < self.leader_renew_deadline_seconds < self.leader_lease_seconds:
            raise ValueError(
                "leader election needs retry < renew deadline < lease seconds, got "
                f"{self.leader_retry_seconds} / {self.leader_renew_deadline_seconds} / "
                f"{self.leader_lease_seconds}"
            )
        return self

    def namespace_list(self) -> list[str]:
        return list(self.namespaces)


@functools.cache
def get_settings() -> OperatorSettings:
    return OperatorSettings()
