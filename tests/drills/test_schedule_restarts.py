"""An operator SIGKILLed across a schedule's times: each time runs at most once, late
ones within startingDeadlineSeconds run on its return, older ones are counted, never
silently dropped.

Covers: killed the moment a run appears and down across the next time: on its return
that time's run is created once, the first run is not created again (same uid),
lastScheduleTime catches up, nothing counted missed; down across several times with a
short startingDeadlineSeconds: the times older than the deadline never run and are
counted in status.missedRuns with a Warning Event MissedSchedules, exactly the times
between the last run before and the first after.

The status is written within milliseconds of the create, so a kill between the two is
not hit reliably here; that window (a run whose status was never written counts as
handled: not run again, not counted missed) is covered by
tests/unit/test_schedule_plan.py.
"""

from __future__ import annotations

import datetime
import time

import pytest

from longtask_contracts import scheduleplan
from tests import helpers, scheduling

pytestmark = pytest.mark.cluster

NOOP = {"spec": {"task": "demo.noop"}}


def _stamp(run: dict) -> int:
    return int(scheduling.scheduled_at(run).timestamp())


def _wait_until(unix: float) -> None:
    """Let the wall clock pass `unix` (the scheduled times are wall-clock times)."""
    while time.time() < unix:
        time.sleep(min(0.2, max(unix - time.time(), 0.01)))


def _first_run(kubectl, namespace: str, name: str) -> dict:
    runs = helpers.poll(
        lambda: scheduling.runs(kubectl, namespace, name), timeout=60, what="the first run", interval=0.005
    )
    return runs[0]


def test_killed_across_a_time_runs_it_once_on_return(platform, kubectl, namespace):
    scheduling.apply(
        kubectl, namespace, "nightly", schedule="@every 10s", startingDeadlineSeconds=120, template=NOOP
    )
    first = _first_run(kubectl, namespace, "nightly")
    platform.kill_operator()  # perhaps before it wrote the status of that run
    try:
        _wait_until(_stamp(first) + 10 + 1)  # the next time passes while it is down
        assert [r["metadata"]["name"] for r in scheduling.runs(kubectl, namespace, "nightly")] == [
            first["metadata"]["name"]
        ]
    finally:
        platform.start_operator()
    second = helpers.poll(
        lambda: [
            r for r in scheduling.runs(kubectl, namespace, "nightly") if _stamp(r) == _stamp(first) + 10
        ],
        timeout=60,
        what="the run of the time it was down across",
    )
    assert len(second) == 1
    helpers.poll(
        lambda: (
            (scheduling.get(kubectl, namespace, "nightly").get("status") or {}).get("lastScheduleTime")
            and scheduling.time(scheduling.get(kubectl, namespace, "nightly")["status"]["lastScheduleTime"])
            >= scheduling.scheduled_at(second[0])
        ),
        timeout=30,
        what="lastScheduleTime to catch up",
    )
    runs = {
        r["metadata"]["name"]: r["metadata"]["uid"] for r in scheduling.runs(kubectl, namespace, "nightly")
    }
    assert runs[first["metadata"]["name"]] == first["metadata"]["uid"], "never created twice"
    status = scheduling.get(kubectl, namespace, "nightly")["status"]
    assert status.get("missedRuns", 0) == 0, "within startingDeadlineSeconds: run late, not missed"
    stamps = sorted(_stamp(r) for r in scheduling.runs(kubectl, namespace, "nightly"))
    assert stamps == list(range(stamps[0], stamps[-1] + 1, 10)), "one run per time, none skipped"
    kubectl("delete", "-n", namespace, "lts/nightly")


def test_times_past_the_starting_deadline_are_counted_not_run(platform, kubectl, namespace):
    scheduling.apply(
        kubectl, namespace, "short", schedule="@every 3s", startingDeadlineSeconds=2, template=NOOP
    )
    first = _first_run(kubectl, namespace, "short")
    platform.kill_operator()
    try:
        _wait_until(_stamp(first) + 3 * 3 + 1)  # three of its times pass while it is down
    finally:
        returned = datetime.datetime.now(datetime.UTC)
        platform.start_operator()
    after = helpers.poll(
        lambda: [r for r in scheduling.runs(kubectl, namespace, "short") if _stamp(r) > _stamp(first)],
        timeout=60,
        what="a run after its return",
    )
    kubectl("patch", "-n", namespace, "lts/short", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    resumed = min(after, key=_stamp)
    skipped = (_stamp(resumed) - _stamp(first)) // 3 - 1
    assert skipped >= 2, "the times while it was down past the deadline"
    assert _stamp(resumed) >= returned.timestamp() - 2, "nothing older than the deadline ran"
    status = helpers.poll(
        lambda: scheduling.only_if(
            scheduling.get(kubectl, namespace, "short").get("status") or {},
            lambda s: s.get("missedRuns", 0) >= skipped,
        ),
        timeout=30,
        what="the missed times counted",
    )
    assert status["missedRuns"] == skipped
    warnings = [
        e
        for e in scheduling.events(kubectl, namespace, "short")
        if (e["reason"], e["type"]) == (scheduleplan.MISSED_SCHEDULES, "Warning")
    ]
    assert warnings and "missed" in warnings[0]["message"]
