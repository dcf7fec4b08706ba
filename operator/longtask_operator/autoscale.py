"""Scales each WorkerPool's Deployment by its pool's work: a thin loop around scaling.decide.

It wakes within a fraction of a second of work arriving (the status sync calls `wake` for
every Queued event, whoever sent it) and otherwise every `interval` seconds (cooldowns
run out, workers finish). Each pool is handled on its own: one whose Deployment is
missing or whose writes fail never holds the others back.

Its apiserver traffic does not grow with its wakes. It decides from caches, not reads:
each pool's Deployment and that Deployment's pods are followed by LIST + WATCH
(informer.py), so a decision reads only Redis. It writes the Deployment's scale on a
decision, pod annotations at a scale-down, and the WorkerPool's status when a decision,
the spec or a condition changes; counts alone (queued, running, ...) at most every
`status_interval` seconds, and nothing at all while nothing changes.

Scale-down removes idle pods only. Just before it lowers replicas it sets
`controller.kubernetes.io/pod-deletion-cost` on the Deployment's pods (idle 0, busy 1000
plus its running attempts), so the ReplicaSet controller deletes idle pods first; busy
pods stay Ready (the controller removes not-Ready pods before it looks at the cost), and
`scaling.decide` never goes below the number of busy pods. Deleting chosen pods instead
(KubeRay's workersToDelete) would fight the ReplicaSet, which recreates any pod deleted
while replicas stay put; the cost annotation works with it, and is set only at a
scale-down, only on pods whose cost changes, as the Kubernetes docs advise, not
continuously.
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
from longtask_operator import informer, kube, loopguard, metrics, pooldata, scaling, workload
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
    # The status the apiserver has, as far as we wrote it (with our own conditions only).
    last_written: dict[str, Any] = field(default_factory=dict)
    last_write: float = 0.0
    last_scale: str | None = None  # RFC 3339 time of our last change of replicas
    last_reason: str | None = None
    # The WorkerPool as last seen (watch event or our write's reply): the version a status
    # write is conditional on, and the conditions other writers own.
    seen_version: str = ""
    seen_conditions: list[dict[str, Any]] = field(default_factory=list)
    deployment: informer.Informer | None = None  # the Deployment spec.deployment names
    pods: informer.Informer | None = None  # its pods (by its selector's matchLabels)
    pod_labels: dict[str, str] = field(default_factory=dict)
    # Our last scale patch: (the Deployment's uid and generation before it, the replicas it
    # set). While the cache shows that object at that generation still, it predates the patch.
    scaled: tuple[str, int, int] | None = None

    @property
    def pool(self) -> str:
        return self.spec.pool_name(self.name)

    def informers(self) -> list[informer.Informer]:
        return [i for i in (self.deployment, self.pods) if i is not None]


class Autoscaler:
    def __init__(
        self, *, kube: kube.Kube, workload: workload.Workload, interval: float, status_interval: float = 15.0
    ) -> None:
        self.kube = kube
        self.workload = workload
        self.interval = interval
        self.status_interval = status_interval
        self.pools: dict[tuple[str, str], _Pool] = {}
        self._wake = asyncio.Event()
        self._stopping: set[asyncio.Task[None]] = set()
        self._running = False  # run() started: informers follow the pools' Deployments
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
                self._stop_informers(gone)
            return
        try:
            spec = models.WorkerPoolSpec.model_validate(body.get("spec") or {})
        except ValueError as exc:  # the CRD validates; this guards a CRD older than the code
            log.warning("ignoring WorkerPool %s/%s: %s", *key, exc)
            return
        known = self.pools.get(key)
        if known is not None and known.uid == meta["uid"]:
            moved = known.spec.deployment != spec.deployment
            known.spec, known.generation = spec, int(meta.get("generation") or 0)
            if moved:
                self._stop_informers(known)
                known.pod_labels, known.scaled = {}, None
        else:
            if known is not None:
                self._stop_informers(known)
            last_written = dict(body.get("status") or {})
            last_written["conditions"] = pooldata.owned(last_written.get("conditions") or [])
            known = self.pools[key] = _Pool(
                namespace=key[0],
                name=key[1],
                uid=meta["uid"],
                generation=int(meta.get("generation") or 0),
                spec=spec,
                last_written=last_written,
                last_scale=last_written.get("lastScaleTime"),
                last_reason=last_written.get("lastScaleReason"),
            )
        self._seen(known, body)
        if self._running:
            self._follow_deployment(known)
        self.wake()

    def _follow_deployment(self, p: _Pool) -> None:
        """Follow the pool's Deployment (an informer), unless that is done already."""
        if p.deployment is None:
            p.deployment = informer.Informer(
                kube=self.kube,
                kind="deployments",
                namespace=p.namespace,
                field_selector=f"metadata.name={p.spec.deployment}",
                on_change=self.wake,
                guard=self.guard,
            ).start()

    def pool_names(self) -> set[str]:
        """The pools of the WorkerPools followed (their queue figures are always exported)."""
        return {p.pool for p in self.pools.values()}

    def wake(self, pool: str | None = None) -> None:
        """Work arrived (in `pool`, or anywhere): decide now rather than at the next tick."""
        if pool is None or any(p.pool == pool for p in self.pools.values()):
            self._wake.set()

    @staticmethod
    def _seen(p: _Pool, obj: dict[str, Any]) -> None:
        p.seen_version = str(obj["metadata"].get("resourceVersion") or "")
        p.seen_conditions = list((obj.get("status") or {}).get("conditions") or [])

    def _stop_informers(self, p: _Pool) -> None:
        for cache in p.informers():
            self._stop_later(cache)
        p.deployment = p.pods = None

    def _stop_later(self, cache: informer.Informer) -> None:
        """Stop `cache` in the background (run() waits for it when it ends)."""
        stopping = asyncio.get_running_loop().create_task(cache.stop())
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Decide for every pool at each wake. Only run() starts the informers: an operator
        that tracks WorkerPools without running it (a standby) reads nothing but Kopf's watch."""
        self._running = True
        for p in self.pools.values():
            self._follow_deployment(p)
        try:
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
        finally:
            await asyncio.gather(
                *(cache.stop() for p in self.pools.values() for cache in p.informers()),
                *self._stopping,
                return_exceptions=True,
            )

    async def once(self, now: float) -> None:
        metrics.AUTOSCALER_PASSES.inc()
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
        if p.deployment is None or not p.deployment.synced:
            return  # its Deployment is not listed yet: nothing known to decide from
        status: dict[str, Any] = {
            "pool": p.pool,
            "queued": load.queued,
            "running": load.in_flight,
            "busyPods": len(load.pods),
            "observedGeneration": p.generation,
        }
        deployment = p.deployment.objects.get(p.spec.deployment)
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
        self._follow_pods(p, deployment)
        replicas = self._replicas(p, deployment)
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
            if p.pods is not None and not p.pods.synced:
                return  # its pods are not listed yet: no scale-down until they are
            # Busy pods counted above are every pod running this pool's attempts; only this
            # Deployment's own count as its floor.
            pods = await self._mark_idle(p, load)
            own_busy = observed.busy_pods if pods is None else sum(1 for pod in pods if load.pods.get(pod))
            if own_busy != observed.busy_pods:
                observed = dataclasses.replace(observed, busy_pods=own_busy)
                decision, p.history = scaling.decide(policy, observed, history)
        if decision.desired != replicas:
            await self._scale(p, decision, replicas, deployment=deployment["metadata"])
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
        await self._write_status(p, status, now)

    @staticmethod
    def _replicas(p: _Pool, deployment: dict[str, Any]) -> int:
        """The Deployment's spec.replicas: as cached, unless the cache predates our last
        scale patch (its generation is the one before the patch), then what we set."""
        meta = deployment["metadata"]
        if p.scaled is not None:
            uid, before, replicas = p.scaled
            if meta.get("uid") == uid and int(meta.get("generation") or 0) <= before:
                return replicas
        p.scaled = None
        return int((deployment.get("spec") or {}).get("replicas", 1))

    def _follow_pods(self, p: _Pool, deployment: dict[str, Any]) -> None:
        """Follow the pods the Deployment's selector picks (its matchLabels), from now on
        and again when they change; none if the selector has no labels."""
        labels = dict(((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        if labels == p.pod_labels and (p.pods is not None or not labels):
            return
        if p.pods is not None:
            self._stop_later(p.pods)
            p.pods = None
        p.pod_labels = labels
        if labels:
            p.pods = informer.Informer(
                kube=self.kube,
                kind="pods",
                namespace=p.namespace,
                label_selector=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
                on_change=lambda: None,  # pods matter at a scale-down only, when they are read
                guard=self.guard,
            ).start()

    async def _mark_idle(self, p: _Pool, load: workload.Load) -> list[str] | None:
        """Make idle pods the ones the ReplicaSet removes (see the module's docstring);
        returns the names of the Deployment's pods (None if its selector has no labels)."""
        if p.pods is None:
            return None
        pods = list(p.pods.objects.values())
        patched = await asyncio.gather(
            *(
                self.kube.annotate_pod(
                    namespace=p.namespace, name=name, annotations={names.POD_DELETION_COST: cost}
                )
                for name, cost in pooldata.deletion_costs(pods, load.pods).items()
            )
        )
        for pod in patched:
            if pod is not None:
                p.pods.put(pod)  # a second scale-down before the watch shows it sees the new cost
        return [str((pod.get("metadata") or {}).get("name")) for pod in pods]

    async def _scale(
        self, p: _Pool, decision: scaling.Decision, replicas: int, *, deployment: dict[str, Any]
    ) -> None:
        """Set the new size; `deployment` is the cached Deployment's metadata."""
        await self.kube.scale(namespace=p.namespace, deployment=p.spec.deployment, replicas=decision.desired)
        p.scaled = (str(deployment.get("uid")), int(deployment.get("generation") or 0), decision.desired)
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

    async def _write_status(self, p: _Pool, status: dict[str, Any], now: float) -> None:
        """Patch what changed: at once after a decision, a spec change or a change of an owned
        condition; counts and messages alone at most once per status_interval; nothing while
        nothing changed (pooldata.status_changes).

        The conditions list is written whole (a merge patch replaces lists): ours, then
        every other type as last seen, conditional on the version they were seen at; if
        anyone wrote the WorkerPool since, it is read again and the write retried once."""
        status["conditions"] = pooldata.keep_transition_times(
            p.last_written.get("conditions") or [], status["conditions"]
        )
        changed, prompt = pooldata.status_changes(p.last_written, status)
        if not changed or (not prompt and now - p.last_write < self.status_interval):
            return
        for attempt in (1, 2):
            body = dict(changed)
            if "conditions" in body:
                body["conditions"] = pooldata.merged_conditions(body["conditions"], p.seen_conditions)
            try:
                reply = await self.kube.patch_pool_status_at(
                    namespace=p.namespace,
                    name=p.name,
                    # only a write of the conditions list needs the version it was seen at
                    resource_version=p.seen_version if "conditions" in body else "",
                    status=body,
                )
            except kubeerrors.Conflict:
                if attempt == 2:
                    raise
                self._seen(p, await self.kube.get_pool(namespace=p.namespace, name=p.name))
                continue
            self._seen(p, reply)
            break
        p.last_written.update(changed)
        p.last_write = now
