"""LongTaskSchedules and their runs as the gateway shows them (schemas.SchedulePublic); pure.

What a schedule shows is what its object and its runs say, nothing computed here: the next
run is status.nextScheduleTime as the operator wrote it (absent until it has), never a time
the gateway works out itself, so the page and the CLI cannot promise a run the operator
would not make. No I/O here: routes/schedules.py reads the objects.
"""

from __future__ import annotations

from typing import Any

from longtask_api import schemas
from longtask_contracts import manualruns, names, phases


def run(obj: dict[str, Any]) -> schemas.ScheduleRun:
    meta, status = obj["metadata"], obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    return schemas.ScheduleRun(
        name=meta["name"],
        phase=phases.Phase(status.get("phase") or phases.Phase.PENDING.value),
        manual=manualruns.is_manual(obj),
        scheduledAt=annotations.get(names.SCHEDULED_AT_ANNOTATION),
        createdAt=meta.get("creationTimestamp"),
        startedAt=status.get("startedAt"),
        finishedAt=status.get("finishedAt"),
        links=schemas.links(meta["namespace"], meta["name"]),
    )


def _ready(status: dict[str, Any]) -> schemas.ScheduleCondition | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return schemas.ScheduleCondition.model_validate(condition)
    return None


def owned(obj: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs `obj` owns: a LongTask that only carries its label (someone else's, or a run of
    a deleted namesake the garbage collector has not reached yet) is not one of them."""
    uid = obj["metadata"]["uid"]
    return [
        r
        for r in runs
        if any(ref.get("uid") == uid for ref in (r.get("metadata") or {}).get("ownerReferences") or [])
    ]


def public(obj: dict[str, Any], *, runs: list[dict[str, Any]] | None, shown: int) -> schemas.SchedulePublic:
    """The schedule `obj` with the newest `shown` of the runs it owns among `runs` (None: not read)."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return schemas.SchedulePublic(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        schedule=str(spec.get("schedule") or ""),
        timeZone=spec.get("timeZone") or "UTC",
        suspend=bool(spec.get("suspend")),
        concurrencyPolicy=spec.get("concurrencyPolicy") or "Allow",
        nextScheduleTime=status.get("nextScheduleTime"),
        lastScheduleTime=status.get("lastScheduleTime"),
        lastSuccessfulTime=status.get("lastSuccessfulTime"),
        missedRuns=status.get("missedRuns"),
        ready=_ready(status),
        runs=None if runs is None else [run(r) for r in manualruns.newest_first(owned(obj, runs))[:shown]],
    )


def listing(
    schedules: list[dict[str, Any]], *, runs: list[dict[str, Any]], shown: int
) -> schemas.ScheduleList:
    """Every schedule, by name, each with its newest `shown` runs of `runs`."""
    groups = manualruns.by_schedule(runs)
    ordered = sorted(schedules, key=lambda o: str(o["metadata"]["name"]))
    return schemas.ScheduleList(
        items=[public(o, runs=groups.get(o["metadata"]["name"], []), shown=shown) for o in ordered]
    )
