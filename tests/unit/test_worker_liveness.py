"""The worker's liveness reading (liveness.py), without a worker.

Covers: paused (before the consumer starts, and while it is stopped) reads live whatever the
age; a fresh tick reads live; a tick older than the stale limit reads not live; the step's
stop pauses the check again.
"""

from __future__ import annotations

import time

import pytest

from longtask_worker import liveness


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> liveness._State:
    fresh = liveness._State()
    fresh.stale_seconds = 5.0
    monkeypatch.setattr(liveness, "_state", fresh)
    return fresh


def test_paused_is_live_and_a_stale_tick_is_not(state: liveness._State) -> None:
    now = time.monotonic()
    assert liveness.reading(now=now + 3600).live, "paused until the consumer starts"
    state.tick()
    assert liveness.reading(now=state.last + 4).live
    stale = liveness.reading(now=state.last + 6)
    assert not stale.live and not stale.paused and stale.age_seconds == pytest.approx(6)
    state.pause()
    assert liveness.reading(now=state.last + 600).live, "a stopped consumer (reconnecting, shutting down)"


class _Timer:
    def __init__(self) -> None:
        self.calls: list[tuple[float, object]] = []

    def call_repeatedly(self, seconds: float, fun: object) -> _Timer:
        self.calls.append((seconds, fun))
        return self

    def cancel(self) -> None:
        self.calls.clear()


class _Consumer:
    def __init__(self) -> None:
        self.timer = _Timer()


def test_the_step_ticks_every_quarter_and_pauses_on_stop(state: liveness._State) -> None:
    consumer = _Consumer()
    step = liveness.Tick.__new__(liveness.Tick)
    step._entry = None
    step.start(consumer)
    assert not state.paused
    assert consumer.timer.calls == [(1.25, state.tick)]
    step.stop(consumer)
    assert state.paused and consumer.timer.calls == []
