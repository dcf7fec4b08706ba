"""scheduleplan.plan(): what the operator does for one schedule at one instant.

Covers: a due run's body (owner reference with controller and blockOwnerDeletion, the
label, the scheduled-at annotation, the template's labels and spec); nothing before the
time; a time handled once (lastHandledTime); Forbid skips while a run is active (counted
missed, a Normal Event); Replace cancels the active run and creates; suspend creates
nothing and handles the times as they pass; missed times after an outage (counted, a
Warning Event, the latest within startingDeadlineSeconds run); an invalid schedule, time
zone or template: Ready False, a Warning Event once, no run; history limits, oldest first.
"""

from __future__ import annotations

import datetime
from typing import Any

from longtask_contracts import names, scheduleplan

T0 = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def schedule(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": scheduleplan.rfc3339(T0),
        },
        "spec": {
            "schedule": "@every 4s",
            "template": {"metadata": {"labels": {"team": "kb"}}, "spec": {"task": "demo.sleep"}},
            **spec,
        },
        "status": status or {},
    }


def run(name: str, phase: str | None = None, finished: float | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if finished is not None:
        status["finishedAt"] = scheduleplan.rfc3339(at(finished))
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": scheduleplan.rfc3339(T0)},
        "spec": {"task": "demo.sleep"},
        "status": status,
    }


def test_nothing_before_the_first_time():
    plan = scheduleplan.plan(schedule=schedule(), runs=[], now=at(3.9))
    assert plan.body is None and plan.wake_at == at(4)
    assert plan.status["nextScheduleTime"] == scheduleplan.rfc3339(at(4))
    assert plan.status["conditions"][0]["status"] == "True"


def test_the_run_at_its_time():
    plan = scheduleplan.plan(schedule=schedule(), runs=[], now=at(4))
    assert plan.run_at == at(4) and plan.body is not None
    meta = plan.body["metadata"]
    assert meta["name"] == f"nightly-{int(at(4).timestamp())}"
    assert meta["labels"] == {"team": "kb", names.SCHEDULE_LABEL: "nightly"}
    assert meta["annotations"][names.SCHEDULED_AT_ANNOTATION] == "2026-03-01T12:00:04Z"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.SCHEDULE_KIND,
            "name": "nightly",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert plan.body["spec"] == {"task": "demo.sleep"}
    assert plan.status["lastScheduleTime"] == plan.status["lastHandledTime"] == "2026-03-01T12:00:04Z"
    assert plan.wake_at == at(8) and plan.missed == 0


def test_a_time_handled_is_not_run_again():
    done = {"lastHandledTime": "2026-03-01T12:00:04Z", "lastScheduleTime": "2026-03-01T12:00:04Z"}
    plan = scheduleplan.plan(schedule=schedule(done), runs=[], now=at(5))
    assert plan.body is None and plan.wake_at == at(8)


def test_a_run_whose_status_was_never_written_counts_as_handled():
    """The operator killed between creating a run and writing the status."""
    first = run("nightly-4", "Succeeded", finished=5)
    first["metadata"]["annotations"] = {names.SCHEDULED_AT_ANNOTATION: "2026-03-01T12:00:04Z"}
    plan = scheduleplan.plan(schedule=schedule(), runs=[first], now=at(9))
    assert plan.run_at == at(8) and plan.missed == 0 and not plan.events
    plan = scheduleplan.plan(schedule=schedule(), runs=[first], now=at(5))
    assert plan.body is None and plan.status["lastScheduleTime"] == "2026-03-01T12:00:04Z"


def test_forbid_skips_while_a_run_is_active_and_counts_it():
    done = {"lastHandledTime": "2026-03-01T12:00:04Z"}
    plan = scheduleplan.plan(
        schedule=schedule(done, concurrencyPolicy="Forbid"), runs=[run("nightly-1", "Running")], now=at(8)
    )
    assert plan.body is None and plan.missed == 1
    assert [(e.reason, e.warning) for e in plan.events] == [(scheduleplan.SKIPPED_FORBID, False)]
    assert plan.status["lastHandledTime"] == "2026-03-01T12:00:08Z"
    assert plan.status["missedRuns"] == 1 and plan.status["activeCount"] == 1
    # Once it finished, the next time runs.
    plan = scheduleplan.plan(
        schedule=schedule(plan.status, concurrencyPolicy="Forbid"),
        runs=[run("nightly-1", "Succeeded", finished=9)],
        now=at(12),
    )
    assert plan.run_at == at(12)


def test_replace_cancels_the_active_run_and_starts_the_new_one():
    plan = scheduleplan.plan(
        schedule=schedule(concurrencyPolicy="Replace"), runs=[run("nightly-1", "Running")], now=at(4)
    )
    assert plan.cancel == [scheduleplan.Ref("nightly-1", "uid-nightly-1")] and plan.run_at == at(4)


def test_suspended_creates_nothing_and_passes_the_times():
    plan = scheduleplan.plan(schedule=schedule(suspend=True), runs=[], now=at(9))
    assert plan.body is None and plan.missed == 0 and not plan.events
    assert plan.status["lastHandledTime"] == "2026-03-01T12:00:08Z"
    assert plan.status["nextScheduleTime"] is None and plan.wake_at == at(12)
    # Resumed: no catch-up run for the times passed while suspended.
    plan = scheduleplan.plan(schedule=schedule(plan.status), runs=[], now=at(11))
    assert plan.body is None and plan.missed == 0


def test_missed_times_after_an_outage_are_counted_and_reported():
    done = {"lastHandledTime": "2026-03-01T12:00:04Z", "missedRuns": 2}
    plan = scheduleplan.plan(schedule=schedule(done), runs=[], now=at(21))  # 8, 12, 16, 20 due
    assert plan.run_at == at(20) and plan.missed == 3 and plan.status["missedRuns"] == 5
    assert [(e.reason, e.warning) for e in plan.events] == [(scheduleplan.MISSED_SCHEDULES, True)]


def test_missed_past_the_starting_deadline_are_not_run():
    done = {"lastHandledTime": "2026-03-01T12:00:04Z"}
    plan = scheduleplan.plan(schedule=schedule(done, startingDeadlineSeconds=2), runs=[], now=at(23))
    assert plan.body is None and plan.missed == 4
    assert plan.status["lastHandledTime"] == "2026-03-01T12:00:23Z"
    plan = scheduleplan.plan(schedule=schedule(plan.status, startingDeadlineSeconds=2), runs=[], now=at(24))
    assert plan.run_at == at(24) and plan.missed == 0


def test_invalid_schedule_time_zone_or_template():
    for spec, words in [
        ({"schedule": "61 * * * *"}, "61 * * * *"),
        ({"schedule": "@every 1x"}, "@every"),
        ({"timeZone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"template": {"spec": {"task": "Bad Name"}}}, "spec.template.spec.task"),
    ]:
        plan = scheduleplan.plan(schedule=schedule(**spec), runs=[], now=at(8))
        assert plan.body is None and plan.wake_at is None
        ready = plan.status["conditions"][0]
        assert (ready["status"], ready["reason"]) == ("False", scheduleplan.INVALID_SCHEDULE)
        assert words in ready["message"]
        assert [(e.reason, e.warning) for e in plan.events] == [(scheduleplan.INVALID_SCHEDULE, True)]
        again = scheduleplan.plan(schedule=schedule(plan.status, **spec), runs=[], now=at(9))
        assert again.events == [], "one Event per change, not per round"
        fixed = scheduleplan.plan(schedule=schedule(plan.status), runs=[], now=at(13))
        assert fixed.body is None, "a fixed schedule starts afresh: no catch-up"
        assert fixed.status["conditions"][0]["status"] == "True"


def test_history_limits_delete_the_oldest_finished_runs():
    runs = [
        run("s1", "Succeeded", finished=1),
        run("s2", "Succeeded", finished=2),
        run("s3", "Succeeded", finished=3),
        run("s4", "Succeeded", finished=4),
        run("f1", "Failed", finished=1),
        run("c1", "Cancelled", finished=2),
        run("r1", "Running"),
    ]
    plan = scheduleplan.plan(schedule=schedule(successfulRunsHistoryLimit=2), runs=runs, now=at(1))
    assert [r.name for r in plan.delete] == ["s1", "s2", "f1"]
    assert plan.last_success == at(4)
    assert plan.status["active"] == [{"name": "r1", "uid": "uid-r1"}]
