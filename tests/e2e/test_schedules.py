"""LongTaskSchedules against the real operator, apiserver, garbage collector and workers.

Covers: `@every 4s` makes a run at each of its times for 20 s, none missed, none early,
the history limit kept, each run owned by the schedule (controller, blockOwnerDeletion)
and labelled, lastScheduleTime and nextScheduleTime set, the printer columns and the
per-schedule metrics shown; Forbid with a 9 s task every
2 s never has two runs active and counts the skipped times (a Normal Event); Replace
cancels the running run when the next one starts; suspend stops new runs at once (its
times pass unrun, no catch-up on resume); an invalid schedule or time zone is a Ready
False condition and a Warning Event, never a run, and what the schema can refuse is
refused at apply; deleting a schedule deletes its runs (the garbage collector).

How late a run is created after its time is measured by bench/schedules.py, not asserted
here (no timing thresholds in tests): here, a run is never created before its time.
"""

from __future__ import annotations

import datetime
import json

import httpx
import prometheus_client.parser
import pytest

from longtask_contracts import names, scheduleplan
from tests import helpers, scheduling

pytestmark = pytest.mark.cluster

NOOP = {"spec": {"task": "demo.noop"}}


def _seconds(value: str) -> int:
    return int(scheduling.time(value).timestamp())


def test_every_4s_runs_on_time_keeps_history_and_owns_its_runs(platform, kubectl, namespace):
    scheduling.apply(
        kubectl, namespace, "every4", schedule="@every 4s", template=NOOP, successfulRunsHistoryLimit=2
    )
    schedule = scheduling.get(kubectl, namespace, "every4")
    created = _seconds(schedule["metadata"]["creationTimestamp"])
    seen: dict[str, dict] = {}

    def twenty_seconds_of_runs() -> bool:
        for run in scheduling.runs(kubectl, namespace, "every4"):
            seen.setdefault(run["metadata"]["name"], run)
        return len(seen) >= 5

    helpers.poll(twenty_seconds_of_runs, timeout=60, what="5 runs (20 s of @every 4s)", interval=0.2)
    times = sorted(int(scheduling.scheduled_at(run).timestamp()) for run in seen.values())
    assert times == [created + 4 * k for k in range(1, len(times) + 1)], (
        "every 4 s from creation, none missed"
    )
    for run in seen.values():
        meta = run["metadata"]
        assert meta["name"] == f"every4-{int(scheduling.scheduled_at(run).timestamp())}"
        assert meta["labels"][names.SCHEDULE_LABEL] == "every4"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": names.API_VERSION,
                "kind": names.SCHEDULE_KIND,
                "name": "every4",
                "uid": schedule["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert scheduling.time(meta["creationTimestamp"]) >= scheduling.scheduled_at(run), "never early"
    status = scheduling.get(kubectl, namespace, "every4")["status"]
    assert _seconds(status["lastScheduleTime"]) >= times[-1]
    assert _seconds(status["nextScheduleTime"]) > _seconds(status["lastScheduleTime"])
    assert status.get("missedRuns", 0) == 0
    assert scheduling.ready(scheduling.get(kubectl, namespace, "every4"))["status"] == "True"
    header = kubectl("get", "-n", namespace, "lts").stdout.splitlines()[0].split()
    assert header == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    series = _metrics(platform, namespace, "every4")
    assert series["longtask_schedule_runs_created_total"] >= 5
    assert series["longtask_schedule_next_run_timestamp_seconds"] >= _seconds(status["nextScheduleTime"])
    assert series["longtask_schedule_interval_seconds"] == 4
    # History: once no run is active, the succeeded ones beyond 2 are deleted, oldest first.
    kubectl("patch", "-n", namespace, "lts/every4", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    left = helpers.poll(
        lambda: scheduling.only_if(scheduling.runs(kubectl, namespace, "every4"), lambda r: len(r) == 2),
        timeout=30,
        what="the runs beyond the history limit deleted",
    )
    assert all(r["status"]["phase"] == "Succeeded" for r in left)
    newest = max(int(scheduling.scheduled_at(r).timestamp()) for r in seen.values())
    assert max(int(scheduling.scheduled_at(r).timestamp()) for r in left) >= newest, "the oldest went first"
    assert min(int(scheduling.scheduled_at(r).timestamp()) for r in left) > times[0]


def _metrics(platform, namespace: str, schedule: str) -> dict[str, float]:
    """The operator's schedule series of `schedule`, by metric name."""
    text = httpx.get(f"http://127.0.0.1:{platform.operator_metrics_port}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in prometheus_client.parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace and sample.labels.get("schedule") == schedule:
                found[sample.name] = sample.value
    return found


def test_forbid_never_has_two_runs_active(platform, kubectl, namespace):
    scheduling.apply(
        kubectl,
        namespace,
        "forbid",
        schedule="@every 2s",
        concurrencyPolicy="Forbid",
        template={"spec": {"task": "demo.sleep", "params": {"seconds": 9, "steps": 3}}},
    )
    most_active = 0
    observed: dict[str, dict] = {}

    def second_run_created() -> bool:
        nonlocal most_active
        current = scheduling.runs(kubectl, namespace, "forbid")
        most_active = max(most_active, sum(scheduling.active(r) for r in current))
        for run in current:
            observed[run["metadata"]["name"]] = run
        return len(current) >= 2

    helpers.poll(second_run_created, timeout=60, what="a second run, after the first finished", interval=0.2)
    assert most_active == 1
    first, second = scheduling.runs(kubectl, namespace, "forbid")[:2]
    assert first["status"]["phase"] == "Succeeded", "the second run came only after the first ended"
    # (whole seconds: creationTimestamp has no fraction)
    assert int(scheduling.time(first["status"]["finishedAt"]).timestamp()) <= int(
        scheduling.time(second["metadata"]["creationTimestamp"]).timestamp()
    )
    status = scheduling.get(kubectl, namespace, "forbid")["status"]
    assert status["missedRuns"] >= 3, "the times skipped while the 9 s run ran are counted"
    reasons = {(e["reason"], e["type"]) for e in scheduling.events(kubectl, namespace, "forbid")}
    assert (scheduleplan.SKIPPED_FORBID, "Normal") in reasons
    kubectl("delete", "-n", namespace, "lts/forbid")


def test_replace_cancels_the_running_run_when_the_next_starts(platform, kubectl, namespace):
    scheduling.apply(
        kubectl,
        namespace,
        "replace",
        schedule="@every 5s",
        concurrencyPolicy="Replace",
        template={"spec": {"task": "demo.sleep", "params": {"seconds": 60, "steps": 60}}},
    )
    first = helpers.poll(
        lambda: next(
            (
                r
                for r in scheduling.runs(kubectl, namespace, "replace")
                if (r.get("status") or {}).get("phase") == "Running"
            ),
            None,
        ),
        timeout=60,
        what="the first run running",
    )
    name = first["metadata"]["name"]
    helpers.poll(
        lambda: (
            len(scheduling.runs(kubectl, namespace, "replace")) >= 2
            and scheduling.runs(kubectl, namespace, "replace")[0]["metadata"]["name"] == name
        ),
        timeout=30,
        what="the next run created",
    )
    kubectl("patch", "-n", namespace, "lts/replace", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    old = json.loads(kubectl("get", "-n", namespace, f"lt/{name}", "-o", "json").stdout)
    assert old["spec"]["cancel"] is True
    kubectl(
        "wait", "-n", namespace, f"lt/{name}", "--for=jsonpath={.status.phase}=Cancelled", "--timeout=60s"
    )


def test_suspend_stops_new_runs_at_once(platform, kubectl, namespace):
    scheduling.apply(kubectl, namespace, "pausing", schedule="@every 2s", template=NOOP)
    helpers.poll(lambda: scheduling.runs(kubectl, namespace, "pausing"), timeout=60, what="a first run")
    kubectl("patch", "-n", namespace, "lts/pausing", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended_at = datetime.datetime.now(datetime.UTC)
    generation = scheduling.get(kubectl, namespace, "pausing")["metadata"]["generation"]

    def two_times_passed_suspended() -> bool:
        status = scheduling.get(kubectl, namespace, "pausing").get("status") or {}
        handled = status.get("lastHandledTime")
        return (
            status.get("observedGeneration") == generation
            and handled is not None
            and scheduling.time(handled) >= suspended_at + datetime.timedelta(seconds=4)
        )

    helpers.poll(two_times_passed_suspended, timeout=30, what="two of its times to pass while suspended")
    before = scheduling.runs(kubectl, namespace, "pausing")
    # A run may be created for the time the suspension arrived in; none for a later one.
    assert all(scheduling.scheduled_at(r) <= suspended_at + datetime.timedelta(seconds=1) for r in before)
    status = scheduling.get(kubectl, namespace, "pausing")["status"]
    assert "nextScheduleTime" not in status and status.get("missedRuns", 0) == 0
    # Resumed: the next time runs, the times passed while suspended never do.
    resumed_at = datetime.datetime.now(datetime.UTC)
    kubectl("patch", "-n", namespace, "lts/pausing", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    after = helpers.poll(
        lambda: [
            r
            for r in scheduling.runs(kubectl, namespace, "pausing")
            if r["metadata"]["name"] not in {b["metadata"]["name"] for b in before}
        ],
        timeout=30,
        what="a run after resuming",
    )
    assert all(scheduling.scheduled_at(r) > resumed_at - datetime.timedelta(seconds=1) for r in after)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"schedule": "61 * * * *"}, "61 * * * *"),
        ({"schedule": "@every 90 seconds"}, "@every"),
        ({"schedule": "@every 2s", "timeZone": "Mars/Olympus"}, "Mars/Olympus"),
    ],
)
def test_an_invalid_schedule_or_time_zone_is_shown_never_ignored(platform, kubectl, namespace, spec, words):
    scheduling.apply(kubectl, namespace, "invalid", template=NOOP, **spec)
    obj = helpers.poll(
        lambda: scheduling.only_if(scheduling.get(kubectl, namespace, "invalid"), scheduling.ready),
        timeout=30,
        what="the Ready condition",
    )
    ready = scheduling.ready(obj)
    assert (ready["status"], ready["reason"]) == ("False", scheduleplan.INVALID_SCHEDULE)
    assert words in ready["message"]
    warnings = helpers.poll(
        lambda: [
            e
            for e in scheduling.events(kubectl, namespace, "invalid")
            if (e["reason"], e["type"]) == (scheduleplan.INVALID_SCHEDULE, "Warning")
        ],
        timeout=30,
        what="the Warning Event",
    )
    assert words in warnings[0]["message"]
    assert scheduling.runs(kubectl, namespace, "invalid") == []
    # Fixed: Ready again, and runs.
    scheduling.apply(kubectl, namespace, "invalid", template=NOOP, schedule="@every 2s", timeZone="UTC")
    helpers.poll(lambda: scheduling.runs(kubectl, namespace, "invalid"), timeout=30, what="a run once fixed")
    assert scheduling.ready(scheduling.get(kubectl, namespace, "invalid"))["status"] == "True"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"schedule": "@every 2s", "concurrencyPolicy": "Sometimes"}, "concurrencyPolicy"),
        ({"schedule": "@every 2s", "template": {"spec": {"task": "Not A Task"}}}, "template.spec.task"),
        ({"schedule": "", "template": NOOP}, "spec.schedule"),
        (
            {"schedule": "@every 2s", "template": NOOP, "startingDeadlineSeconds": -1},
            "startingDeadlineSeconds",
        ),
    ],
)
def test_what_the_schema_can_tell_is_refused_at_apply(platform, kubectl, namespace, spec, words):
    spec.setdefault("template", NOOP)
    result = scheduling.apply(kubectl, namespace, "refused", check=False, **spec)
    assert result.returncode != 0 and words in result.stderr


def test_deleting_the_schedule_deletes_its_runs(platform, kubectl, namespace):
    scheduling.apply(kubectl, namespace, "owner", schedule="@every 2s", template=NOOP)
    helpers.poll(lambda: scheduling.runs(kubectl, namespace, "owner"), timeout=60, what="a run")
    kubectl("delete", "-n", namespace, "lts/owner")
    helpers.poll(
        lambda: scheduling.runs(kubectl, namespace, "owner") == [],
        timeout=60,
        what="the garbage collector to delete the runs",
    )
