"""A run of a LongTaskSchedule made by hand ("Run now"), and how a schedule's runs are found; pure.

A manual run is what a scheduled run is (a LongTask from the schedule's template, owned by
the schedule, labelled longtask.io/schedule=<name>) but named <name>-manual-<unix seconds>
and annotated longtask.io/instantiate=manual instead of longtask.io/scheduled-at, as
`kubectl create job --from=cronjob/...` makes a Job of a CronJob: it never stands for a
scheduled time, so it can neither take nor fill the place of one. Two triggers in the same
second name the same run: the second gets AlreadyExists, which the caller reports.

It must not do I/O: the gateway reads the schedule and creates the run.
"""

from __future__ import annotations

import datetime
from typing import Any

from longtask_contracts import names

MANUAL = "manual"  # the value of names.INSTANTIATE_ANNOTATION on a manual run


def run_name(*, schedule: str, now: datetime.datetime) -> str:
    """The name of the run triggered at `now`: one name per second."""
    return f"{schedule}-{MANUAL}-{int(now.timestamp())}"


def selector(schedule: str | None = None) -> str:
    """The label selector of `schedule`'s runs (None: the runs of every schedule)."""
    return f"{names.SCHEDULE_LABEL}={schedule}" if schedule else names.SCHEDULE_LABEL


def owner_reference(schedule: dict[str, Any]) -> dict[str, Any]:
    """The reference that makes a run the schedule's: deleting the schedule deletes it.

    No blockOwnerDeletion: setting it needs `update` on the schedule's finalizers (the
    OwnerReferencesPermissionEnforcement admission plugin), a right the gateway does not
    hold, and the garbage collector deletes the runs after their schedule without it.
    """
    meta = schedule["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.SCHEDULE_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def manual_run(
    schedule: dict[str, Any], *, now: datetime.datetime, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """The LongTask to create for a run of `schedule` now: the template's labels,
    annotations and spec, the schedule's label, owner reference and `annotations` (a trace
    context) on top."""
    name = schedule["metadata"]["name"]
    template = (schedule.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), names.SCHEDULE_LABEL: name}
    notes = {
        **(template_meta.get("annotations") or {}),
        **(annotations or {}),
        names.INSTANTIATE_ANNOTATION: MANUAL,
    }
    notes.pop(names.SCHEDULED_AT_ANNOTATION, None)  # a manual run has no scheduled time
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {
            "name": run_name(schedule=name, now=now),
            "labels": labels,
            "annotations": notes,
            "ownerReferences": [owner_reference(schedule)],
        },
        "spec": dict(template.get("spec") or {}),
    }


def is_manual(run: dict[str, Any]) -> bool:
    annotations = (run.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.INSTANTIATE_ANNOTATION) == MANUAL


def newest_first(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs by creation time, newest first (the name breaks a tie, so the order is stable)."""

    def key(run: dict[str, Any]) -> tuple[str, str]:
        meta = run.get("metadata") or {}
        return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")

    return sorted(runs, key=key, reverse=True)


def by_schedule(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by the schedule their label names, each group newest first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        owner = ((run.get("metadata") or {}).get("labels") or {}).get(names.SCHEDULE_LABEL)
        if owner:
            groups.setdefault(owner, []).append(run)
    return {owner: newest_first(group) for owner, group in groups.items()}
