"""Runs LongTaskSchedules: creates each run at its time, and keeps their status and metrics.

Three loops: the LIST-then-WATCH (longtask_runtime.reflector) of every LongTaskSchedule
and of every LongTask labelled longtask.io/schedule (their runs), cluster-wide, kept in
memory and filtered by the operator's namespaces; and one timer. The timer sleeps until
the earliest next time of any schedule (asyncio, to the instant) or until a watch shows a
change, then asks contracts' scheduleplan.plan() for each schedule what to do and does
it: cancel (Replace), create the run, write the status, post Events, delete runs past
the history limits, set the schedule's metrics.

Never a run twice for one time: a run is named from its time, so a second create (after
a restart, or because the watch had not shown the status yet) is refused with
AlreadyExists, which counts as done. A run is created before the status that records it;
an operator killed in between creates it again on its return (AlreadyExists) and writes
the status then.

It decides nothing itself (scheduleplan does) and must not touch a LongTask that no
schedule owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Coroutine
from typing import Any

from longtask_contracts import names, scheduleplan
from longtask_operator import kube, loopguard, metrics, scope
from longtask_runtime import kubeerrors, reflector

log = logging.getLogger(__name__)

KINDS = ("schedules", "runs")
CRD_MISSING_RETRY_SECONDS = 60.0
RETRY_SECONDS = 2.0  # a schedule whose round failed (the apiserver away, a refused create)
Key = tuple[str, str]  # namespace, schedule name


class Schedules:
    def __init__(self, *, kube: kube.Kube, namespaces: list[str] | None = None) -> None:
        self.kube = kube
        self.namespaces = namespaces or []
        self.schedules: dict[Key, dict[str, Any]] = {}
        self.runs: dict[Key, dict[str, dict[str, Any]]] = {}  # schedule -> run name -> LongTask
        # By schedule uid: the status fields we wrote last, and the version they were written on.
        self.written: dict[str, tuple[str, dict[str, Any]]] = {}
        self.listed: dict[str, bool] = dict.fromkeys(KINDS, False)
        self._changed = asyncio.Event()
        self.guards = {kind: loopguard.Guard(f"schedule-watch-{kind}") for kind in KINDS}
        self.guard = loopguard.Guard("schedules")

    def loops(self) -> list[tuple[Coroutine[Any, Any, None], loopguard.Guard]]:
        """(coroutine, its guard) of each loop, for the operator's startup."""
        watches = [(self.follow(kind), guard) for kind, guard in self.guards.items()]
        return [*watches, (self.run(), self.guard)]

    # -- the watches -----------------------------------------------------------------
    async def follow(self, kind: str) -> None:
        guard = self.guards[kind]
        await reflector.reflect(
            what=f"schedule {kind}",
            list_objects=lambda: self.kube.schedule_listing(kind),
            watch_objects=lambda version: self.kube.schedule_changes(kind, resource_version=version),
            listed=lambda items: self._listed(kind, items),
            changed=lambda event_type, obj: self._event(kind, event_type, obj),
            failed=lambda exc: self._failed(kind, exc),
            succeeded=guard.succeeded,
        )

    def _failed(self, kind: str, exc: Exception) -> float:
        """A failed LIST or WATCH: the guard's backoff, except for a cluster without the
        LongTaskSchedule CRD (Helm installs crds/ on a first install only, so an upgrade can
        bring this operator before the CRD): that is not a bug of ours, and must not make
        the operator unhealthy; schedules stay off until the CRD is applied."""
        if kind == "schedules" and isinstance(exc, kubeerrors.NotFound):
            log.warning(
                "the LongTaskSchedule CRD is not installed: no schedules until it is"
                " (kubectl apply --server-side -f charts/longtask/crds/); looking again in %g s",
                CRD_MISSING_RETRY_SECONDS,
            )
            return CRD_MISSING_RETRY_SECONDS
        return self.guards[kind].failed(exc)

    def _ours(self, obj: dict[str, Any]) -> bool:
        return scope.in_scope(self.namespaces, obj["metadata"]["namespace"])

    def _listed(self, kind: str, items: list[dict[str, Any]]) -> None:
        if kind == "schedules":
            gone = set(self.schedules)
            self.schedules = {_key(obj): obj for obj in items if self._ours(obj)}
            for key in gone - set(self.schedules):
                _forget_metrics(key)
        else:
            self.runs = {}
            for obj in items:
                self._event(kind, "ADDED", obj)
        self.listed[kind] = True
        self._changed.set()

    def _event(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        if not self._ours(obj):
            return
        if kind == "schedules":
            key = _key(obj)
            if event_type == "DELETED":
                self.schedules.pop(key, None)
                self.written.pop(obj["metadata"]["uid"], None)
                _forget_metrics(key)
            else:
                self.schedules[key] = obj
        else:
            meta = obj["metadata"]
            key = (meta["namespace"], (meta.get("labels") or {}).get(names.SCHEDULE_LABEL, ""))
            runs = self.runs.setdefault(key, {})
            if event_type == "DELETED":
                runs.pop(meta["name"], None)
            else:
                runs[meta["name"]] = obj
        self._changed.set()

    # -- the timer -------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: a round at each schedule's next time and after each change."""
        while True:
            wake = None
            self._changed.clear()  # a change from now on makes another round
            try:
                if all(self.listed.values()):
                    wake = await self.round()
                self.guard.succeeded()
            except Exception as exc:  # the next round, after a while
                await asyncio.sleep(self.guard.failed(exc))
                continue
            timeout = None
            if wake is not None:
                timeout = max((wake - _now()).total_seconds(), 0.0) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def round(self) -> datetime.datetime | None:
        """Each schedule's plan, done; the earliest next time of all (None: none)."""
        wake: datetime.datetime | None = None
        for key, schedule in list(self.schedules.items()):
            try:
                at: datetime.datetime | None = await self.handle(key, schedule)
            except Exception as exc:  # one schedule's failure: the others go on; it is retried
                self.guard.item_failed(exc, what=f"schedule {key[0]}/{key[1]} (again in {RETRY_SECONDS:g} s)")
                at = _now() + datetime.timedelta(seconds=RETRY_SECONDS)
            if at is not None and (wake is None or at < wake):
                wake = at
        return wake

    async def handle(self, key: Key, schedule: dict[str, Any]) -> datetime.datetime | None:
        namespace, name = key
        uid = schedule["metadata"]["uid"]
        runs = [
            run
            for run in self.runs.get(key, {}).values()
            if any(ref.get("uid") == uid for ref in run["metadata"].get("ownerReferences") or [])
        ]
        # The status as we last wrote it, while the watch does not show that write yet.
        seen = self._status_seen(schedule)
        plan = scheduleplan.plan(schedule={**schedule, "status": seen}, runs=runs, now=_now())
        for ref in plan.cancel:
            await self._cancel(namespace, ref)
        if plan.body is not None:
            created = await self._create(namespace, plan.body)
            if created is not None:
                entry = {"name": created["metadata"]["name"], "uid": created["metadata"]["uid"]}
                if entry not in plan.status["active"]:
                    plan.status["active"].append(entry)
                    plan.status["activeCount"] += 1
        for event in plan.events:
            log.log(
                logging.WARNING if event.warning else logging.INFO,
                "schedule %s/%s: %s",
                namespace,
                name,
                event.message,
            )
            await self.kube.post_event(
                namespace=namespace,
                name=name,
                uid=uid,
                reason=event.reason,
                message=event.message,
                warning=event.warning,
                kind=names.SCHEDULE_KIND,
            )
        if plan.missed:
            metrics.SCHEDULE_MISSED.labels(namespace=namespace, schedule=name).inc(plan.missed)
        await self._write_status(namespace, name, schedule, seen, plan)
        for ref in plan.delete:
            with contextlib.suppress(kubeerrors.NotFound):  # gone already
                await self.kube.delete(namespace=namespace, name=ref.name, uid=ref.uid)
        _set_metrics(key, plan, created=schedule["metadata"].get("creationTimestamp"))
        return plan.wake_at

    async def _create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create the run; None if it exists already (created before: done)."""
        meta = body["metadata"]
        schedule = meta["labels"][names.SCHEDULE_LABEL]
        try:
            created = await self.kube.create(namespace=namespace, body=body)
        except kubeerrors.AlreadyExists:
            log.info("run %s/%s exists already (created before)", namespace, meta["name"])
            return None
        metrics.SCHEDULE_RUNS.labels(namespace=namespace, schedule=schedule).inc()
        log.info("schedule %s/%s: created run %s", namespace, schedule, meta["name"])
        return created

    async def _cancel(self, namespace: str, ref: scheduleplan.Ref) -> None:
        """Replace: spec.cancel on the run, if it is still the one meant."""
        try:
            await self.kube.patch(
                namespace=namespace,
                name=ref.name,
                body={"metadata": {"uid": ref.uid}, "spec": {"cancel": True}},
            )
        except kubeerrors.NotFound:
            return
        log.info("run %s/%s cancelled: concurrencyPolicy Replace", namespace, ref.name)

    def _status_seen(self, schedule: dict[str, Any]) -> dict[str, Any]:
        """The schedule's status, with our last write laid over it while the watch still
        shows the version it was written on (a later version includes the write)."""
        status = dict(schedule.get("status") or {})
        version, written = self.written.get(schedule["metadata"]["uid"], ("", {}))
        if version == schedule["metadata"]["resourceVersion"]:
            status.update(written)
        return status

    async def _write_status(
        self,
        namespace: str,
        name: str,
        schedule: dict[str, Any],
        seen: dict[str, Any],
        plan: scheduleplan.Plan,
    ) -> None:
        """Patch the fields of the plan's status that differ from what is seen."""
        changed = {k: v for k, v in plan.status.items() if seen.get(k) != v}
        if not changed:
            return
        await self.kube.patch_schedule_status(namespace=namespace, name=name, status=changed)
        uid, version = schedule["metadata"]["uid"], schedule["metadata"]["resourceVersion"]
        before = self.written.get(uid, ("", {}))[1] if self.written.get(uid, ("", {}))[0] == version else {}
        self.written[uid] = (version, {**before, **changed})


def _key(obj: dict[str, Any]) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _set_metrics(key: Key, plan: scheduleplan.Plan, *, created: str | None) -> None:
    labels = {"namespace": key[0], "schedule": key[1]}
    born = scheduleplan.parse_time(created)
    metrics.SCHEDULE_CREATED.labels(**labels).set(born.timestamp() if born else 0)
    nxt = scheduleplan.parse_time(plan.status.get("nextScheduleTime"))
    metrics.SCHEDULE_NEXT_RUN.labels(**labels).set(nxt.timestamp() if nxt else 0)
    metrics.SCHEDULE_LAST_SUCCESS.labels(**labels).set(
        plan.last_success.timestamp() if plan.last_success else 0
    )
    metrics.SCHEDULE_INTERVAL.labels(**labels).set(plan.interval)


def _forget_metrics(key: Key) -> None:
    """A deleted schedule's series go (a stale next-run time would alert forever)."""
    for metric in (
        metrics.SCHEDULE_NEXT_RUN,
        metrics.SCHEDULE_LAST_SUCCESS,
        metrics.SCHEDULE_INTERVAL,
        metrics.SCHEDULE_RUNS,
        metrics.SCHEDULE_MISSED,
        metrics.SCHEDULE_CREATED,
    ):
        with contextlib.suppress(KeyError):
            metric.remove(key[0], key[1])
