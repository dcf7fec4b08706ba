"""What a schedule's run made by hand is, and how the gateway shows a schedule with its runs.

Covers: a manual run is the template's LongTask with the schedule's label (over the
template's own), owner reference (controller, the schedule's uid) and
longtask.io/instantiate=manual, never a scheduled-at, named <name>-manual-<unix seconds>;
the template's labels and annotations come along; the view shows spec fields with their
CRD defaults, the status as written (no nextScheduleTime: none, not a computed one), the
Ready condition, and the newest `shown` runs the schedule owns, newest first (a LongTask
that only carries its label is not one); the listing is by name and groups runs by label.
"""

from __future__ import annotations

import datetime
from typing import Any

from longtask_api import scheduleviews
from longtask_contracts import manualruns, names

NOW = datetime.datetime(2026, 12, 5, 8, 0, 0, tzinfo=datetime.UTC)


def schedule(name: str = "nightly", uid: str = "u-1", **spec: Any) -> dict[str, Any]:
    body = {"schedule": "0 2 * * *", "template": {"spec": {"task": "docs.embed"}}, **spec}
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}, "spec": body}


def run(
    name: str, *, created: str, owner: str = "u-1", schedule: str = "nightly", phase: str | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": created,
            "labels": {names.SCHEDULE_LABEL: schedule},
            "ownerReferences": [{"uid": owner}],
        },
        "status": {"phase": phase} if phase else {},
    }


def test_a_manual_run_is_the_template_owned_and_labelled():
    obj = schedule(
        template={
            "metadata": {
                "labels": {"team": "search", names.SCHEDULE_LABEL: "forged"},
                "annotations": {"note": "x", names.SCHEDULED_AT_ANNOTATION: "2026-01-01T00:00:00Z"},
            },
            "spec": {"task": "docs.embed", "params": {"directory": "/data"}, "pool": "batch"},
        }
    )
    body = manualruns.manual_run(obj, now=NOW, annotations={"longtask.io/traceparent": "00-a-b-01"})
    meta = body["metadata"]
    assert meta["name"] == f"nightly-manual-{int(NOW.timestamp())}"
    assert meta["labels"] == {"team": "search", names.SCHEDULE_LABEL: "nightly"}
    assert meta["annotations"] == {
        "note": "x",
        "longtask.io/traceparent": "00-a-b-01",
        names.INSTANTIATE_ANNOTATION: "manual",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.SCHEDULE_KIND,
            "name": "nightly",
            "uid": "u-1",
            "controller": True,
        }
    ]
    assert body["kind"] == names.KIND and body["spec"]["pool"] == "batch"
    assert manualruns.is_manual(body)


def test_the_view_shows_the_status_as_written_and_the_newest_owned_runs():
    obj = schedule(timeZone="Europe/Berlin", suspend=True, concurrencyPolicy="Forbid")
    obj["status"] = {
        "lastScheduleTime": "2026-12-05T01:00:00Z",
        "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSchedule", "message": "m"}],
    }
    runs = [
        run("nightly-1", created="2026-12-03T01:00:00Z", phase="Succeeded"),
        run("nightly-3", created="2026-12-05T01:00:00Z", phase="Running"),
        run("nightly-2", created="2026-12-04T01:00:00Z", phase="Failed"),
        run("stranger", created="2026-12-06T01:00:00Z", owner="u-other"),
    ]
    view = scheduleviews.public(obj, runs=runs, shown=2)
    assert (view.time_zone, view.suspend, view.concurrency_policy) == ("Europe/Berlin", True, "Forbid")
    assert view.next_schedule_time is None  # the operator has not written one: none is made up
    assert view.last_schedule_time == "2026-12-05T01:00:00Z"
    assert view.ready is not None and (view.ready.status, view.ready.reason) == ("False", "InvalidSchedule")
    assert view.runs is not None
    assert [(r.name, r.phase.value) for r in view.runs] == [("nightly-3", "Running"), ("nightly-2", "Failed")]
    assert str(view.runs[0].links.self) == "/v1/namespaces/ns/tasks/nightly-3"


def test_spec_defaults_and_no_runs_read():
    view = scheduleviews.public(schedule(), runs=None, shown=5)
    assert (view.time_zone, view.suspend, view.concurrency_policy) == ("UTC", False, "Allow")
    assert view.runs is None and view.ready is None


def test_the_listing_is_by_name_with_each_schedules_runs():
    runs = [
        run("b-1", created="2026-12-05T01:00:00Z", schedule="b", owner="u-b"),
        run("a-manual-1", created="2026-12-05T02:00:00Z", schedule="a", owner="u-a", phase="Pending"),
    ]
    listing = scheduleviews.listing([schedule("b", "u-b"), schedule("a", "u-a")], runs=runs, shown=5)
    assert [(s.name, [r.name for r in s.runs or []]) for s in listing.items] == [
        ("a", ["a-manual-1"]),
        ("b", ["b-1"]),
    ]
    assert manualruns.selector("a") == f"{names.SCHEDULE_LABEL}=a"
    assert manualruns.selector() == names.SCHEDULE_LABEL
