"""Folding worker events into a LongTask status (pure), and which phases get an Event.

Covers: a whole run, late and superseded events refused, errors, retries, replays,
bounded strings; Kubernetes Events only for Retrying, Failed (dead-lettered said so) and
Cancelled, none for the routine Queued, Running and Succeeded.
"""

from __future__ import annotations

import json

import pytest

from longtask_contracts import events
from longtask_operator import fold

K = events.Kind


def ev(kind: events.Kind, **fields) -> events.TaskEvent:
    return events.TaskEvent(kind=kind, namespace="ns", name="t", uid="u", at=1_700_000_000, **fields)


def test_a_whole_run():
    status: dict = {}
    for event in [
        ev(K.QUEUED, attempt=1, progress=0),
        ev(K.STARTED, attempt=1, worker="w1"),
        ev(K.PROGRESS, attempt=1, progress=42.123, message="half", step="embed"),
        ev(K.SUCCEEDED, attempt=1, progress=100, result={"n": 3}),
    ]:
        status = fold.fold(status, event) or status
    assert status["phase"] == "Succeeded"
    assert status["progress"] == 100 and status["progressText"] == "100%"
    assert status["attempts"] == 1 and status["worker"] == "w1"
    assert status["result"] == {"n": 3} and status["step"] == "embed"
    assert status["startedAt"] == status["finishedAt"] == "2023-11-14T22:13:20Z"
    assert status["conditions"][0]["type"] == "Succeeded" and status["conditions"][0]["status"] == "True"


def test_late_events_after_the_end_are_refused():
    done = {"phase": "Succeeded", "progress": 100, "attempts": 1}
    assert fold.fold(done, ev(K.PROGRESS, attempt=1, progress=50)) is None
    assert fold.fold(done, ev(K.QUEUED, attempt=1)) is None


def test_events_of_a_superseded_attempt_are_refused():
    assert fold.fold({"phase": "Running", "attempts": 2}, ev(K.PROGRESS, attempt=1, progress=5)) is None


def test_failure_carries_the_error_into_message_and_condition():
    status = fold.fold(
        {"phase": "Running", "attempts": 1},
        ev(K.FAILED, attempt=1, error={"type": "UnknownTask", "message": "no task x"}),
    )
    assert status is not None
    assert status["error"]["type"] == "UnknownTask" and status["message"] == "no task x"
    assert status["conditions"][0]["status"] == "False"
    assert fold.event_message(status) == ("UnknownTask: no task x", True)


def test_progress_text_rounds_down():
    status = fold.fold({"phase": "Running", "attempts": 1}, ev(K.PROGRESS, attempt=1, progress=99.9))
    assert status is not None and status["progressText"] == "99%"


def test_retry_then_success_records_each_attempt():
    status: dict = {}
    for event in [
        ev(K.QUEUED, attempt=1),
        ev(K.STARTED, attempt=1, worker="w1"),
        ev(
            K.RETRYING,
            attempt=1,
            error={"type": "RetryableError", "message": "flaky"},
            retry_at=1_700_000_010,
        ),
        ev(K.QUEUED, attempt=2),
        ev(K.STARTED, attempt=2, worker="w2"),
        ev(K.SUCCEEDED, attempt=2, progress=100),
    ]:
        new = fold.fold(status, event)
        assert new is not None, event
        status = new
        if event.kind == K.RETRYING:
            assert status["phase"] == "Retrying" and status["nextAttemptAt"] == "2023-11-14T22:13:30Z"
    assert status["attempts"] == 2 and "error" not in status and "nextAttemptAt" not in status
    assert [(h["attempt"], h["outcome"]) for h in status["attemptHistory"]] == [
        (1, "Retrying"),
        (2, "Succeeded"),
    ]


def test_a_worker_lost_before_reporting_start_still_counts_as_an_attempt():
    status = fold.fold(
        {"phase": "Queued", "attempts": 0},
        ev(K.RETRYING, attempt=1, error={"type": "WorkerLost", "message": "gone"}, retry_at=1),
    )
    assert status is not None and status["attemptHistory"] == [
        {
            "attempt": 1,
            "finishedAt": "2023-11-14T22:13:20Z",
            "outcome": "WorkerLost",
            "error": {"type": "WorkerLost", "message": "gone"},
        }
    ]


def test_late_queued_event_does_not_move_a_running_task_back():
    assert fold.fold({"phase": "Running", "attempts": 1}, ev(K.QUEUED, attempt=1)) is None


def test_replay_from_the_dead_letter_queue():
    failed = {
        "phase": "Failed",
        "attempts": 3,
        "deadLettered": True,
        "finishedAt": "x",
        "error": {"type": "RetryableError", "message": "m"},
    }
    status = fold.fold(failed, ev(K.QUEUED, attempt=4))
    assert status is not None
    assert status["phase"] == "Queued" and status["replays"] == 1 and status["deadLettered"] is False
    assert "finishedAt" not in status and "error" not in status


def test_huge_task_strings_are_bounded_in_the_status():
    """A 2 MB message must not push the object past what the apiserver stores."""
    huge = "x" * 2_000_000
    status: dict = {"phase": "Pending"}
    for event in (
        ev(K.STARTED, attempt=1, worker="w" * 10_000),
        ev(K.PROGRESS, attempt=1, progress=10, message=huge, step=huge),
        ev(K.FAILED, attempt=1, error={"type": "E" * 10_000, "message": huge}),
    ):
        status = fold.fold(status, event)
        assert status is not None
    assert len(json.dumps(status)) < 20_000
    assert len(status["error"]["message"]) == fold.LIMITS["error.message"]
    assert status["error"]["message"].endswith(
        "[2000000 characters; the full text is in the task's event stream]"
    )
    assert len(status["message"]) <= fold.LIMITS["message"]
    assert len(status["step"]) <= fold.LIMITS["step"]
    assert len(status["worker"]) <= fold.LIMITS["worker"]
    assert len(status["attemptHistory"][-1]["error"]["message"]) <= fold.HISTORY_ERROR_LIMIT
    assert len(status["conditions"][0]["message"]) <= fold.LIMITS["message"]
    assert fold.bounded("short", 10) == "short"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Pending"}, None),
        ({"phase": "Queued", "attempts": 0}, None),
        ({"phase": "Running", "attempts": 1, "worker": "w1"}, None),
        ({"phase": "Succeeded", "attempts": 1}, None),
        (
            {
                "phase": "Retrying",
                "attempts": 1,
                "error": {"type": "RetryableError", "message": "flaky"},
                "nextAttemptAt": "2023-11-14T22:13:30Z",
            },
            ("attempt 1 failed (RetryableError: flaky); next attempt at 2023-11-14T22:13:30Z", True),
        ),
        (
            {"phase": "Failed", "error": {"type": "E", "message": "m"}, "deadLettered": True},
            ("E: m (dead-lettered)", True),
        ),
        ({"phase": "Failed"}, ("Error: ", True)),
        ({"phase": "Cancelled", "message": "cancelled by a user"}, ("cancelled by a user", False)),
        ({"phase": "Cancelled"}, ("cancelled", False)),
    ],
)
def test_only_what_people_look_for_gets_an_event(status, expected):
    assert fold.event_message(status) == expected
