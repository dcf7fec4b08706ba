"""The task SDK and runner alone, with an in-memory store at the Redis edge.

Covers: registration and clear errors for unknown names and bad params; the events of
a successful, failing and cancelled run; a second delivery of a claimed attempt does
nothing.
"""

from __future__ import annotations

import pytest

from longtask_contracts import events
from longtask_worker import runner, sdk
from longtask_worker.tasks import demo  # noqa: F401 - registers the demo tasks


class MemoryStore:
    def __init__(self) -> None:
        self.events: list[events.TaskEvent] = []
        self.claims: dict[str, str] = {}
        self.done: set[str] = set()
        self.cancelled: set[str] = set()

    def publish(self, event: events.TaskEvent) -> str:
        self.events.append(event)
        if event.terminal:
            self.done.add(event.uid)
        return f"{len(self.events)}-0"

    def claim(self, *, uid: str, attempt: int, worker: str, lease_seconds: float) -> bool:
        if uid in self.done or uid in self.claims:
            return False
        self.claims[uid] = f"{attempt}:{worker}"
        return True

    def renew(self, *, uid: str, lease_seconds: float) -> None: ...

    def release(self, *, uid: str) -> None:
        self.claims.pop(uid, None)

    def cancel_requested(self, uid: str) -> bool:
        return uid in self.cancelled


def run(store: MemoryStore, task: str, **params) -> events.Kind | None:
    dispatch = events.Dispatch(namespace="ns", name="t", uid="u1", task=task, params=params)
    return runner.run(
        dispatch=dispatch,
        store=store,
        worker="w",
        lease_seconds=30,  # type: ignore[arg-type]
        result_max_bytes=1024,
    )


def test_success_reports_progress_and_result():
    store = MemoryStore()
    assert run(store, "demo.sleep", seconds=0, steps=4) is events.Kind.SUCCEEDED
    kinds = [e.kind for e in store.events]
    assert kinds == [events.Kind.STARTED] + [events.Kind.PROGRESS] * 4 + [events.Kind.SUCCEEDED]
    assert store.events[-1].result == {"slept": store.events[-1].result["slept"], "steps": 4}
    assert store.claims == {}, "the lease is released"


def test_unknown_task_and_bad_params_fail_clearly():
    store = MemoryStore()
    assert run(store, "demo.nope") is events.Kind.FAILED
    error = store.events[-1].error
    assert error is not None and error["type"] == "UnknownTask" and "demo.sleep" in error["message"]
    store = MemoryStore()
    assert run(store, "demo.sleep", sconds=1) is events.Kind.FAILED
    assert store.events[-1].error == {"type": "InvalidParams", "message": store.events[-1].error["message"]}
    assert "sconds" in store.events[-1].error["message"]


def test_cancelled_before_start_never_runs_the_body():
    store = MemoryStore()
    store.cancelled.add("u1")
    assert run(store, "demo.sleep", seconds=100) is events.Kind.CANCELLED


def test_redelivery_of_a_finished_attempt_does_nothing():
    store = MemoryStore()
    run(store, "demo.noop")
    before = len(store.events)
    assert run(store, "demo.noop") is None
    assert len(store.events) == before


def test_registering_a_name_twice_is_an_error():
    @sdk.task("test.once")
    def first(ctx: sdk.TaskContext) -> None: ...

    with pytest.raises(ValueError, match="registered twice"):

        @sdk.task("test.once")
        def second(ctx: sdk.TaskContext) -> None: ...
