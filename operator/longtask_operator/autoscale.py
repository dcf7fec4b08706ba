"""Scales each WorkerPool's Deployment by its pool's work: a thin loop around scaling.decide.

It wakes within a fraction of a second of work arriving (the status sync calls `wake` for
every Queued event, whoever sent it) and otherwise every `interval` seconds (cooldowns
run out, workers finish). Each pool is handled on its own: one whose Deployment is
missing or whose writes fail never holds the others back.

Scale-down removes idle pods only. Just before it lowers replicas it sets
`controller.kubernetes.io/pod-deletion-cost` on the Deployment's pods (idle 0, busy 1000
plus its running attempts), so the ReplicaSet controller deletes idle pods first; busy
pods stay Ready (the controller removes not-Ready pods before it looks at the cost), and
`scaling.decide` never goes below the number of busy pods. Deleting chosen pods instead
(KubeRay's workersToDelete) would fight the ReplicaSet, which recreates any pod deleted
while replicas stay put; the cost annotation works with it, and is set only at a
scale-down, as the Kubernetes docs advise, not continuously.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from longtask_contracts import models, names
from longtask_operator import kube, loopguard, metrics, pooldata, scaling, workload
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)

_MIN_GAP_SECONDS = 0.1


@dataclass
class _Pool:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: models.WorkerPoolSpec
    history: scaling.History | None = None  # None until the first decision (see _pool)
    last_written: dict[str, Any] = field(default_factory=dict)  # the status the apiserver has
    last_write: float = 0.0
    last_scale: str | None = None  # RFC 3339 time of our last change of replicas
    last_reason: str | None = None

    @property
    def pool(self) -> str:
        return self.spec.pool_name(self.name)


class Autoscaler:
    def __init__(
        self, *, kube: kube.Kube, workload: workload.Workload, interval: float, status_interval: float = 1.0
    ) -> None:
        self.kube = kube
        self.workload = workload
        self.interval = interval
        self.status_interval = status_interval
        self.pools: dict[tuple[str, str], _Pool] = {}
        self._wake = asyncio.Event()
        self.guard = loopguard.Guard("autoscaler", first_delay=interval)

    # -- inputs ------------------------------------------------------------------------
    def track(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Follow a WorkerPool watch event (Kopf's on.event: None for the initial listing)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            gone = self.pools.pop(key, None)
            if gone is not None:
                metrics.forget_pool(gone.pool)
            return
        try:
            spec = models.WorkerPoolSpec.model_validate(body.get("spec") or {})
        except ValueError as exc:  # the CRD validates; this guards a CRD older than the code
            log.warning("ignoring WorkerPool %s/%s: %s", *key, exc)
            return
        known = self.pools.get(key)
        if known is not None and known.uid == meta["uid"]:
            known.spec, known.generation = spec, int(meta.get("generation") or 0)
        else:
            last_written = dict(body.get("status") or {})
            self.pools[key] = _Pool(
                namespace=key[0],
                name=key[1],
                uid=meta["uid"],
                generation=int(meta.get("generation") or 0),
                spec=spec,
                last_written=last_written,
                last_scale=last_written.get("lastScaleTime"),
                last_reason=last_written.get("lastScaleReason"),
            )
        self.wake()

    def pool_names(self) -> set[str]:
        """The pools of the WorkerPools followed (their queue figures are always exported)."""
        return {p.pool for p in self.pools.values()}

    def wake(self, pool: str | None = None) -> None:
        """Work arrived (in `pool`, or anywhere): decide now rather than at the next tick."""
        if pool is None or any(p.pool == pool for p in self.pools.values()):
            self._wake.set()

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()
            try:
                await self.once(time.monotonic())
                self.guard.succeeded()
            except Exception as exc:  # the next tick, later if it keeps failing
                await asyncio.sleep(self.guard.failed(exc))
            await asyncio.sleep(_MIN_GAP_SECONDS)  # a burst of wakes costs a few decisions a second

    async def once(self, now: float) -> None:
        pools = list(self.pools.values())
        loads = await self.workload.read(sorted({p.pool for p in pools}))
        results = await asyncio.gather(
            *(self._pool(p, loads[p.pool], now) for p in pools), return_exceptions=True
        )
        for p, result in zip(pools, results, strict=True):
            if isinstance(result, Exception) and not isinstance(result, kubeerrors.NotFound):
                self.guard.item_failed(result, what=f"WorkerPool {p.namespace}/{p.name} failed; next tick")
            elif isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled: the loop stops

    async def _pool(self, p: _Pool, load: workload.Load, now: float) -> None:
        metrics.POOL_QUEUED.labels(pool=p.pool).set(load.queued)
        metrics.POOL_RUNNING.labels(pool=p.pool).set(load.in_flight)
        status: dict[str, Any] = {
            "pool": p.pool,
            "queued": load.queued,
            "running": load.in_flight,
            "busyPods": len(load.pods),
            "observedGeneration": p.generation,
        }
        deployment = await self.kube.get_deployment(namespace=p.namespace, name=p.spec.deployment)
        if deployment is None:
            status["conditions"] = [
                pooldata.condition(
                    "Ready",
                    False,
                    "DeploymentNotFound",
                    f"no Deployment {p.spec.deployment!r} in {p.namespace}; the backlog waits for one",
                )
            ]
            await self._write_status(p, status, now)
            return
        replicas = int((deployment.get("spec") or {}).get("replicas", 1))
        policy = scaling.Policy(
            min_replicas=p.spec.min_replicas,
            max_replicas=p.spec.max_replicas,
            tasks_per_replica=p.spec.tasks_per_replica or pooldata.worker_concurrency(deployment),
            cooldown_seconds=p.spec.cooldown_seconds,
            max_scale_up_step=p.spec.max_scale_up_step,
            paused=p.spec.paused,
        )
        observed = scaling.Observation(
            queued=load.queued, running=load.in_flight, replicas=replicas, busy_pods=len(load.pods), now=now
        )
        if p.history is None:
            # A pool seen for the first time (or by a restarted operator) keeps its size for
            # one cooldown: what happened before is unknown, so it is not a reason to shrink.
            p.history = ((now, replicas),)
        history = p.history
        decision, p.history = scaling.decide(policy, observed, history)
        if decision.direction is scaling.Direction.DOWN:
            # Busy pods counted above are every pod running this pool's attempts; only this
            # Deployment's own count as its floor (the pod list is read at scale-down only).
            pods = await self._mark_idle(p, deployment, load)
            own_busy = observed.busy_pods if pods is None else sum(1 for pod in pods if load.pods.get(pod))
            if own_busy != observed.busy_pods:
                observed = dataclasses.replace(observed, busy_pods=own_busy)
                decision, p.history = scaling.decide(policy, observed, history)
        if decision.desired != replicas:
            await self._scale(p, decision, replicas)
        metrics.POOL_DESIRED.labels(pool=p.pool).set(decision.desired)
        metrics.POOL_REPLICAS.labels(pool=p.pool).set(
            int((deployment.get("status") or {}).get("replicas", 0))
        )
        limited = load.queued + load.in_flight > policy.max_replicas * policy.tasks_per_replica
        status.update(
            desiredReplicas=decision.desired,
            replicas=int((deployment.get("status") or {}).get("replicas", 0)),
            lastScaleTime=p.last_scale,
            lastScaleReason=p.last_reason,
            conditions=[
                pooldata.condition("Ready", True, "Paused" if policy.paused else "Scaling", decision.reason),
                pooldata.condition(
                    "ScalingLimited",
                    limited,
                    "TooManyTasks" if limited else "WithinRange",
                    f"the load needs more than maxReplicas ({policy.max_replicas})"
                    if limited
                    else "the load fits within minReplicas..maxReplicas",
                ),
            ],
        )
        await self._write_status(p, status, now, force=decision.desired != replicas)

    async def _mark_idle(self, p: _Pool, deployment: dict[str, Any], load: workload.Load) -> list[str] | None:
        """Make idle pods the ones the ReplicaSet removes (see the module's docstring);
        returns the names of the Deployment's pods (None if its selector has no labels)."""
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return None
        pods = await self.kube.pods(namespace=p.namespace, match_labels=labels)
        await asyncio.gather(
            *(
                self.kube.annotate_pod(
                    namespace=p.namespace, name=name, annotations={names.POD_DELETION_COST: cost}
                )
                for name, cost in pooldata.deletion_costs(pods, load.pods).items()
            )
        )
        return [str((pod.get("metadata") or {}).get("name")) for pod in pods]

    async def _scale(self, p: _Pool, decision: scaling.Decision, replicas: int) -> None:
        await self.kube.scale(namespace=p.namespace, deployment=p.spec.deployment, replicas=decision.desired)
        p.last_scale = pooldata.now_rfc3339()
        p.last_reason = f"{replicas} -> {decision.desired}: {decision.reason}"
        metrics.POOL_DECISIONS.labels(pool=p.pool, direction=decision.direction.value).inc()
        log.info("WorkerPool %s/%s scaled %s", p.namespace, p.name, p.last_reason)
        await self.kube.post_event(
            namespace=p.namespace,
            name=p.name,
            uid=p.uid,
            kind=names.POOL_KIND,
            reason="ScaledUp" if decision.direction is scaling.Direction.UP else "ScaledDown",
            message=f"Deployment {p.spec.deployment} {p.last_reason}",
        )

    async def _write_status(
        self, p: _Pool, status: dict[str, Any], now: float, *, force: bool = False
    ) -> None:
        """Patch what changed, at most once per status_interval unless replicas changed."""
        status["conditions"] = pooldata.keep_transition_times(
            p.last_written.get("conditions") or [], status["conditions"]
        )
        changed = {k: v for k, v in status.items() if p.last_written.get(k) != v}
        if not changed or (not force and now - p.last_write < self.status_interval):
            return
        await self.kube.patch_pool_status(namespace=p.namespace, name=p.name, status=changed)
        p.last_written.update(changed)
        p.last_write = now
