"""All Kopf wiring of the operator; each handler calls domain code in one to three lines.

Kopf runs the operator's life (startup, cleanup, the liveness endpoint) and follows
WorkerPools; the startup handler starts the loops that do the rest, LongTasks included
(taskwatch.py: their LIST and WATCH are ours, see there why) and LongTaskSchedules
(schedules.py).

Run with `longtask operator [-n NS]...` (it hands the namespaces to Kopf, and to
taskwatch.py as LONGTASK_NAMESPACES).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import kopf
import prometheus_client

from longtask_contracts import names, tracing
from longtask_operator import (
    autoscale,
    dispatch,
    kube,
    leader,
    leadership,
    loopguard,
    maintenance,
    metrics,
    observe,
    poolclaims,
    redisrepair,
    schedules,
    settings,
    statussync,
    tasksweep,
    taskwatch,
    workload,
)
from longtask_runtime import kube as runtimekube
from longtask_runtime import redisconn, sending

WORKER_POOLS = (names.GROUP, names.VERSION, names.POOL_PLURAL)  # what Kopf follows
STOP_SECONDS = 5.0  # at a stop, how long the loops may take to end before the Lease is released


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """Kopf logs in as every component does (longtask_runtime.kube), not by its own lookup."""
    return kopf.ConnectionInfo(**await runtimekube.credentials())


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = configure(settings)
    tracing.setup("longtask-operator")  # only with OTEL_EXPORTER_OTLP_ENDPOINT (tracing.py)
    memo.redis = redisconn.async_client(cfg.redis_target())
    memo.celery = sending.celery_sender(cfg.redis_target())
    memo.kube = await kube.Kube.connect(request_timeout=cfg.kube_timeout_seconds)
    memo.autoscaler = autoscale.Autoscaler(
        kube=memo.kube,
        workload=workload.Workload(memo.redis, claim_timeout=cfg.claim_timeout_seconds),
        interval=cfg.autoscale_interval_seconds,
        status_interval=cfg.pool_status_interval_seconds,
    )
    memo.observer = observe.Observer(
        redis=memo.redis, workload=memo.autoscaler.workload, interval=cfg.metrics_interval_seconds
    )
    # Who may use which pool: every WorkerPool and Namespace, cluster-wide (poolclaims.py).
    memo.pool_claims = poolclaims.PoolClaims(kube=memo.kube, namespaces=cfg.namespace_list())
    # LongTaskSchedules: their runs created on time (schedules.py).
    memo.schedules = schedules.Schedules(kube=memo.kube, namespaces=cfg.namespace_list())
    watch = taskwatch.TaskWatch(
        redis=memo.redis,
        celery=memo.celery,
        kube=memo.kube,
        pools=memo.pool_claims.claims,
        pools_ready=memo.pool_claims.watch.ready,
        namespaces=cfg.namespace_list(),
        on_seen=memo.observer.on_longtask,
    )
    sweep = tasksweep.TaskSweep(
        redis=memo.redis, celery=memo.celery, kube=memo.kube, watch=watch, sweep_seconds=cfg.sweep_seconds
    )
    sync = statussync.StatusSync(
        redis=memo.redis,
        kube=memo.kube,
        consumer=cfg.consumer,
        interval=cfg.status_interval_seconds,
        writers=cfg.status_writers,
        on_queued=memo.autoscaler.wake,
        on_event=memo.observer.on_event,
    )
    # Redis restarted, failed over or lost data: what it lost is sent again (redisrepair.py).
    repair = redisrepair.RedisRepair(
        redis=memo.redis,
        celery=memo.celery,
        kube=memo.kube,
        watch=watch,
        grace=cfg.redis_repair_grace_seconds,
    )
    upkeep = maintenance.Maintenance(
        redis=memo.redis,
        celery=memo.celery,
        kube=memo.kube,
        tick=cfg.maintenance_tick_seconds,
        poison_crashes=cfg.poison_crashes,
        claim_timeout=cfg.claim_timeout_seconds,
        listed=watch.listed,
        hold_leases=repair.check,
    )

    # Each loop's task is named as its guard (loopguard.py), which the liveness probe reads.
    def singletons() -> list[tuple[Coroutine[Any, Any, None], loopguard.Guard]]:
        """The loops that must run once in the cluster: on the leader only."""
        return [
            (sync.run(), sync.guard),
            (upkeep.run(), upkeep.guard),
            *((watch.follow(ns), guard) for ns, guard in watch.guards.items()),
            (sweep.run(), sweep.guard),
            (repair.run(), repair.guard),
            (memo.autoscaler.run(), memo.autoscaler.guard),
            (memo.observer.run(memo.autoscaler.pool_names), memo.observer.guard),
            *memo.pool_claims.loops(),
            *memo.schedules.loops(),
        ]

    memo.guards, memo.loops = [], []

    def lead() -> None:
        for loop, guard in singletons():
            memo.guards.append(guard)
            memo.loops.append(asyncio.create_task(loop, name=guard.loop))

    memo.elector = None
    if cfg.leader_election:
        memo.elector = await elector(cfg, on_leading=lead)
        memo.guards.append(memo.elector.guard)
        memo.loops.append(asyncio.create_task(memo.elector.run(), name=memo.elector.guard.loop))
    else:  # alone: it leads (the metric says so, or LongTaskOperatorNoLeader would fire)
        metrics.LEADER.labels(identity=cfg.leader_identity, lease="").set(1)
        lead()
    if cfg.metrics_port:
        prometheus_client.start_http_server(cfg.metrics_port, addr=cfg.metrics_host)


async def elector(cfg: settings.OperatorSettings, *, on_leading: Callable[[], None]) -> leader.Elector:
    """The leader elector, on a client of its own: renewals never queue behind the loops' calls."""
    return leader.Elector(
        kube=kube.Kube(await runtimekube.login(), timeout=cfg.kube_timeout_seconds),
        namespace=leader.lease_namespace(cfg.leader_lease_namespace),
        name=cfg.leader_lease_name or leadership.lease_name(names.MANAGER, namespaces=cfg.namespace_list()),
        identity=cfg.leader_identity,
        timing=leader.Timing(
            lease_seconds=cfg.leader_lease_seconds,
            renew_deadline=cfg.leader_renew_deadline_seconds,
            retry=cfg.leader_retry_seconds,
        ),
        on_leading=on_leading,
    )


def configure(kopf_settings: kopf.OperatorSettings) -> settings.OperatorSettings:
    """Kopf settings, set explicitly so that behaviour never depends on Kopf's defaults."""
    # Kopf follows WorkerPools with an event handler only, so it adds no finalizer and
    # persists nothing; LongTasks it does not watch at all (taskwatch.py does). Were that to
    # change, its state would live in annotations under our prefix, not in .status.
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.KOPF_PREFIX, key="last-handled-configuration"
    )
    # Watches are renewed every 5 minutes by the server; the client gives it 30 s more.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.watching.connect_timeout = 10
    # Every other API request Kopf makes (patches, Events) gives up after this long.
    kopf_settings.networking.request_timeout = 30
    kopf_settings.networking.connect_timeout = 10
    # No Kopf peering (no KopfPeering objects to install): several operators elect a leader
    # on a Lease instead (leader.py). On a standby Kopf only follows WorkerPools into the
    # autoscaler's memory (track_pool), which writes nothing.
    kopf_settings.peering.standalone = True
    kopf_settings.posting.level = logging.WARNING
    # Kopf logs every event handler's success at INFO: one line per watch event. Failures
    # still log.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    return settings.get_settings()


@kopf.on.probe(id="loops")
def loops_alive(memo: kopf.Memo, **_: Any) -> list[str]:
    """Part of the liveness endpoint: fails (500) once a background loop has ended or keeps
    failing with a bug, so that Kubernetes restarts the operator."""
    loops = getattr(memo, "loops", [])
    problems = loopguard.problems(loops, getattr(memo, "guards", []))
    if problems:  # permanent: Kopf would otherwise retry the probe, and /healthz hang meanwhile
        raise kopf.PermanentError("; ".join(problems))
    return [loop.get_name() for loop in loops]


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop every loop, then (a leader) release the Lease, so that a standby takes over at
    its next look and never while a loop of ours still runs."""
    for loop in memo.loops:
        loop.cancel()
    pending = (await asyncio.wait(memo.loops, timeout=STOP_SECONDS))[1] if memo.loops else set()
    if memo.elector is not None:
        if pending:  # a loop still runs: the Lease must expire instead (a standby waits it out)
            logging.getLogger(__name__).warning(
                "loops still running %.0f s after the stop, the Lease is not released: %s",
                STOP_SECONDS,
                ", ".join(sorted(loop.get_name() for loop in pending)),
            )
        else:
            await memo.elector.release()
        await memo.elector.kube.close()
    await memo.redis.aclose()
    await memo.kube.close()
    tracing.shutdown()


@kopf.on.event(*WORKER_POOLS)
async def track_pool(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.autoscaler.track(type, dispatch.plain(body))
