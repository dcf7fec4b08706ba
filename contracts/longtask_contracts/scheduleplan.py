"""What the operator does for one LongTaskSchedule at one instant; pure.

plan() takes the schedule and its runs (LongTasks labelled longtask.io/schedule=<name>)
as the watches last showed them, and the time, and says: which run to create (its
scheduled time and its whole LongTask body), which active runs to cancel first (Replace),
which finished runs to delete (history limits), which Events to post, how many scheduled
times were missed, the status to write, and when to look again.

Times are handled once: status.lastHandledTime is the latest scheduled time the operator
dealt with (a run created for it, or skipped by Forbid, or passed while suspended), so
that a time is never counted twice and never run twice; a run's name is its scheduled
time (schedules.run_name), so a second create of it is refused by the apiserver. Missed
times follow schedules.due() (CronJob's rule) and are counted, never dropped silently.

It must not do I/O: the operator's schedules.py reads the clock and the apiserver.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import pydantic

from longtask_contracts import names, phases, schedules

READY = "Ready"
INVALID_SCHEDULE = "InvalidSchedule"
MISSED_SCHEDULES = "MissedSchedules"
SKIPPED_FORBID = "SkippedForbidConcurrent"
# The status fields the operator owns (a merge patch writes each, None removing one).
STATUS_FIELDS = (
    "lastScheduleTime",
    "lastHandledTime",
    "lastSuccessfulTime",
    "nextScheduleTime",
    "active",
    "activeCount",
    "missedRuns",
    "observedGeneration",
    "conditions",
)


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Ref:
    name: str
    uid: str


@dataclass
class Plan:
    run_at: datetime.datetime | None = None  # create the run of this time
    body: dict[str, Any] | None = None  # ... this LongTask
    cancel: list[Ref] = field(default_factory=list)  # before creating (Replace)
    delete: list[Ref] = field(default_factory=list)  # finished runs beyond the history limits
    events: list[Event] = field(default_factory=list)
    missed: int = 0  # times newly missed (the counter's increment)
    status: dict[str, Any] = field(default_factory=dict)  # STATUS_FIELDS, assuming the create succeeds
    wake_at: datetime.datetime | None = None  # the next scheduled time (None: none)
    interval: float = 0.0  # seconds between the next two times (0: suspended or invalid)
    last_success: datetime.datetime | None = None


def rfc3339(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(datetime.UTC)


def is_finished(run: dict[str, Any]) -> bool:
    phase = (run.get("status") or {}).get("phase")
    return phase in {p.value for p in phases.TERMINAL}


def plan(
    *,
    schedule: dict[str, Any],
    runs: list[dict[str, Any]],
    now: datetime.datetime,
) -> Plan:
    """What to do for `schedule` at `now` (see the module doc)."""
    meta, status = schedule["metadata"], dict(schedule.get("status") or {})
    created = parse_time(meta["creationTimestamp"])
    assert created is not None
    out = Plan()
    active = [run for run in runs if not is_finished(run) and not run["metadata"].get("deletionTimestamp")]
    out.last_success = _last_success(status, runs)
    try:
        spec = schedules.ScheduleSpec.model_validate(schedule.get("spec") or {})
        clock = schedules.parse(spec.schedule, spec.time_zone)
    except schedules.InvalidSchedule as exc:
        return _invalid(out, schedule=schedule, active=active, message=str(exc), now=now)
    except pydantic.ValidationError as exc:
        return _invalid(out, schedule=schedule, active=active, message=_pydantic_message(exc), now=now)
    out.delete = _beyond_history(runs, spec)
    # A run that exists was handled, even if the status that says so was never written (an
    # operator killed between the two): its time is neither run again nor counted missed.
    marks = [parse_time(status.get("lastHandledTime")), parse_time(status.get("lastScheduleTime"))]
    marks += [_scheduled_at(run) for run in runs]
    handled = max([created, *(t for t in marks if t)])
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == READY), {})
    if ready.get("reason") == INVALID_SCHEDULE:  # fixed just now: start afresh, no catch-up
        handled = max(handled, now.replace(microsecond=0))
    missed_runs = int(status.get("missedRuns") or 0)
    found = schedules.due(
        clock,
        last=handled,
        now=now,
        anchor=created,
        starting_deadline_seconds=spec.starting_deadline_seconds,
    )
    if found.run_at is not None or found.missed:
        handled = found.run_at or now.replace(microsecond=0)
    if spec.suspend:
        pass  # times passed while suspended are neither run nor missed
    else:
        if found.missed:
            out.missed += found.missed
            more = "more than " if found.too_many else ""
            deadline = spec.starting_deadline_seconds
            out.events.append(
                Event(
                    MISSED_SCHEDULES,
                    f"{more}{found.missed} scheduled time(s) missed (the operator was not running then"
                    + (
                        f"; only a time within startingDeadlineSeconds={deadline} is run late"
                        if deadline is not None
                        else "; only the latest is run late"
                    )
                    + ")",
                    warning=True,
                )
            )
        if found.run_at is not None:
            _start(out, schedule=schedule, spec=spec, at=found.run_at, active=active)
    missed_runs += out.missed
    scheduled = [
        parse_time(status.get("lastScheduleTime")),
        *(_scheduled_at(run) for run in runs),
        out.run_at,
    ]
    last_scheduled = max((t for t in scheduled if t), default=None)
    # Suspended: no next run to show, but the timer still wakes at each time, so that the
    # times passed while suspended are handled (neither run nor missed) as they pass.
    out.wake_at = found.next_at
    out.interval = 0.0 if spec.suspend else clock.interval_hint(after=now, anchor=created)
    refs = [Ref(run["metadata"]["name"], run["metadata"]["uid"]) for run in active]
    out.status = {
        "lastScheduleTime": rfc3339(last_scheduled) if last_scheduled else None,
        "lastHandledTime": rfc3339(handled),
        "lastSuccessfulTime": rfc3339(out.last_success) if out.last_success else None,
        "nextScheduleTime": rfc3339(out.wake_at) if out.wake_at and not spec.suspend else None,
        "active": [{"name": r.name, "uid": r.uid} for r in refs],
        "activeCount": len(refs),
        "missedRuns": missed_runs,
        "observedGeneration": meta.get("generation"),
        "conditions": [_condition(status, now=now, ok=True, reason="Valid", message="the schedule is valid")],
    }
    return out


def _start(
    out: Plan,
    *,
    schedule: dict[str, Any],
    spec: schedules.ScheduleSpec,
    at: datetime.datetime,
    active: list[dict[str, Any]],
) -> None:
    """The run of `at`, by the concurrency policy."""
    meta = schedule["metadata"]
    name = schedules.run_name(meta["name"], at)
    others = [run for run in active if run["metadata"]["name"] != name]
    if spec.concurrency_policy is schedules.ConcurrencyPolicy.FORBID and others:
        out.missed += 1
        running = ", ".join(run["metadata"]["name"] for run in others)
        out.events.append(
            Event(
                SKIPPED_FORBID,
                f"the run of {rfc3339(at)} skipped: concurrencyPolicy Forbid and {running} active",
            )
        )
        return
    if spec.concurrency_policy is schedules.ConcurrencyPolicy.REPLACE:
        out.cancel = [
            Ref(run["metadata"]["name"], run["metadata"]["uid"])
            for run in others
            if not (run.get("spec") or {}).get("cancel")
        ]
    out.run_at = at
    out.body = run_body(schedule=schedule, at=at)


def run_body(*, schedule: dict[str, Any], at: datetime.datetime) -> dict[str, Any]:
    """The LongTask of the run of `at`: owned by the schedule (the garbage collector deletes
    it with the schedule), labelled and annotated, its spec the template's."""
    meta = schedule["metadata"]
    template = schedule["spec"]["template"]
    tmeta = template.get("metadata") or {}
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {
            "name": schedules.run_name(meta["name"], at),
            "namespace": meta["namespace"],
            "labels": {**(tmeta.get("labels") or {}), names.SCHEDULE_LABEL: meta["name"]},
            "annotations": {**(tmeta.get("annotations") or {}), names.SCHEDULED_AT_ANNOTATION: rfc3339(at)},
            "ownerReferences": [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.SCHEDULE_KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": dict(template["spec"]),
    }


def _invalid(
    out: Plan, *, schedule: dict[str, Any], active: list[dict[str, Any]], message: str, now: datetime.datetime
) -> Plan:
    """No runs, Ready=False saying what is wrong, a Warning Event when that becomes so. The
    times passed while invalid are handled as they pass (lastHandledTime is moved to when
    the schedule became invalid): a fixed schedule starts afresh, with no catch-up run."""
    status = dict(schedule.get("status") or {})
    now_condition = _condition(status, now=now, ok=False, reason=INVALID_SCHEDULE, message=message)
    old = next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
    handled = status.get("lastHandledTime")
    if not old or (old.get("status"), old.get("reason"), old.get("message")) != (
        "False",
        INVALID_SCHEDULE,
        message,
    ):
        out.events.append(Event(INVALID_SCHEDULE, message, warning=True))
        handled = rfc3339(now)
    out.status = {
        "lastHandledTime": handled,
        "nextScheduleTime": None,
        "active": [{"name": r["metadata"]["name"], "uid": r["metadata"]["uid"]} for r in active],
        "activeCount": len(active),
        "observedGeneration": schedule["metadata"].get("generation"),
        "conditions": [now_condition],
    }
    if out.last_success:
        out.status["lastSuccessfulTime"] = rfc3339(out.last_success)
    return out


def _condition(
    status: dict[str, Any], *, now: datetime.datetime | None, ok: bool, reason: str, message: str
) -> dict[str, Any]:
    """The Ready condition, its lastTransitionTime kept while its status stays."""
    wanted = "True" if ok else "False"
    old = next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == wanted else None
    when = since or rfc3339(now or datetime.datetime.now(datetime.UTC))
    return {"type": READY, "status": wanted, "reason": reason, "message": message, "lastTransitionTime": when}


def _pydantic_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"spec.{where}: {error['msg']}")
    return "; ".join(parts)


def _finished_at(run: dict[str, Any]) -> datetime.datetime:
    at = parse_time((run.get("status") or {}).get("finishedAt"))
    at = at or parse_time((run["metadata"].get("annotations") or {}).get(names.SCHEDULED_AT_ANNOTATION))
    return (
        at
        or parse_time(run["metadata"]["creationTimestamp"])
        or datetime.datetime.min.replace(tzinfo=datetime.UTC)
    )


def _scheduled_at(run: dict[str, Any]) -> datetime.datetime | None:
    return parse_time((run["metadata"].get("annotations") or {}).get(names.SCHEDULED_AT_ANNOTATION))


def _last_success(status: dict[str, Any], runs: list[dict[str, Any]]) -> datetime.datetime | None:
    times = [
        _finished_at(run) for run in runs if (run.get("status") or {}).get("phase") == phases.Phase.SUCCEEDED
    ]
    known = parse_time(status.get("lastSuccessfulTime"))
    return max([*times, *([known] if known else [])], default=None)


def _beyond_history(runs: list[dict[str, Any]], spec: schedules.ScheduleSpec) -> list[Ref]:
    """Finished runs past the limits, oldest first: succeeded ones past
    successfulRunsHistoryLimit, failed or cancelled ones past failedRunsHistoryLimit."""
    done = sorted(
        (run for run in runs if is_finished(run) and not run["metadata"].get("deletionTimestamp")),
        key=_finished_at,
    )
    good = [run for run in done if run["status"]["phase"] == phases.Phase.SUCCEEDED]
    bad = [run for run in done if run["status"]["phase"] != phases.Phase.SUCCEEDED]
    old = good[: max(len(good) - spec.successful_runs_history_limit, 0)]
    old += bad[: max(len(bad) - spec.failed_runs_history_limit, 0)]
    return [Ref(run["metadata"]["name"], run["metadata"]["uid"]) for run in old]
