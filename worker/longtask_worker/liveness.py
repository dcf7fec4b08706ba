"""Whether the worker's main process still works: the signal behind its GET /healthz.

A Celery consumer bootstep puts a repeating timer on the consumer's event loop (the hub of
the main process, which receives messages, acknowledges them and hands them to the pool).
Each tick records the time. The loop turns while tasks run in the prefork children, so a
pool busy with long tasks keeps ticking and stays healthy; a main process whose loop is
blocked (a deadlock, a hung call) stops ticking, and /healthz fails once the last tick is
older than LONGTASK_HEALTH_STALE_SECONDS. While the consumer is stopped (connecting or
reconnecting to Redis, or in its warm shutdown, waiting for running tasks) the loop does
not turn by design: the check is paused then, so a Redis outage or a long shutdown never
gets the worker restarted (a restart would cut its running tasks short).

It must not serve HTTP (exposition.py does) nor run in task children (a child's loop is
its task).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery, bootsteps


@dataclass(frozen=True)
class Health:
    """One reading: whether the main process is live, and how old its last tick is."""

    live: bool
    paused: bool
    age_seconds: float


class _State:
    """The last tick (monotonic seconds), or paused while the consumer is not running."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.paused = True
        self.stale_seconds = 60.0

    def tick(self) -> None:
        with self.lock:
            self.last, self.paused = time.monotonic(), False

    def pause(self) -> None:
        with self.lock:
            self.paused = True


_state = _State()


def reading(*, now: float | None = None) -> Health:
    """The main process' health now (called from the metrics server's thread)."""
    now = time.monotonic() if now is None else now
    with _state.lock:
        age = max(0.0, now - _state.last)
        live = _state.paused or age <= _state.stale_seconds
        return Health(live=live, paused=_state.paused, age_seconds=age)


class Tick(bootsteps.StartStopStep):
    """The consumer step that ticks: started with the consumer, stopped (paused) with it."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._entry: Any = None

    def start(self, parent: Any) -> None:
        _state.tick()
        self._entry = parent.timer.call_repeatedly(max(0.5, _state.stale_seconds / 4), _state.tick)

    def stop(self, parent: Any) -> None:
        _state.pause()
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


def install(app: Celery, *, stale_seconds: float) -> None:
    """Add the ticking step to the app's consumer (in the main process, before it starts)."""
    _state.stale_seconds = stale_seconds
    app.steps["consumer"].add(Tick)
