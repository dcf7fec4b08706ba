"""How the operator's background loops treat a failure (loopguard.py), with plain fakes.

Covers: what is transient (Redis unreachable, timing out or loading; the apiserver
unavailable or a conflict) and what is a bug (everything else, a refused request
included); each failure counted by loop and kind; the wait after a failed round doubles,
never below the loop's own pace, capped lower for transient failures than for bugs, and
starts over after a good round; a bug's traceback logged once per distinct error, then a
line at its 10th occurrence; a loop failing with a bug round after round becomes
unhealthy, transient failures and failed items do not make it so, a good round heals it;
the liveness probe fails on an unhealthy or ended loop and lists the loops otherwise.
"""

from __future__ import annotations

import logging

import kopf
import prometheus_client
import pytest
import redis.exceptions

from longtask_operator import handlers, loopguard
from longtask_runtime import kubeerrors


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (redis.exceptions.ConnectionError("refused"), True),
        (redis.exceptions.TimeoutError("slow"), True),
        (redis.exceptions.BusyLoadingError("loading"), True),
        (ConnectionResetError("reset"), True),
        (TimeoutError(), True),
        (kubeerrors.Unavailable("no answer"), True),
        (kubeerrors.Unavailable("throttled", status=429), True),
        (kubeerrors.Conflict("changed", status=409), True),
        (kubeerrors.AlreadyExists("taken", status=409), False),
        (kubeerrors.NotFound("gone", status=404), False),
        (kubeerrors.Invalid("refused", status=422), False),
        (kubeerrors.Forbidden("rbac", status=403), False),
        (redis.exceptions.ResponseError("WRONGTYPE"), False),
        (KeyError("status"), False),
        (TypeError("bad call"), False),
    ],
)
def test_transient_or_bug(exc, transient):
    assert loopguard.is_transient(exc) is transient


def _count(loop: str, kind: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "longtask_operator_loop_errors_total", {"loop": loop, "kind": kind}
    )
    return value or 0.0


def _raised(exc: Exception) -> Exception:
    """`exc` with a traceback (raised from one place, as a loop would see it)."""
    try:
        raise exc
    except Exception as caught:
        return caught


def test_failures_are_counted_by_loop_and_kind():
    guard = loopguard.Guard("test-counting")
    guard.failed(_raised(redis.exceptions.ConnectionError("down")))
    guard.item_failed(_raised(kubeerrors.Unavailable("5xx", status=503)), what="one item")
    guard.failed(_raised(KeyError("x")))
    assert _count("test-counting", "transient") == 2
    assert _count("test-counting", "bug") == 1


def test_the_wait_doubles_within_its_bounds_and_starts_over():
    guard = loopguard.Guard("test-backoff", first_delay=1.0)
    down = redis.exceptions.ConnectionError("down")
    assert [guard.failed(down) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert [guard.failed(KeyError("x")) for _ in range(3)] == [30.0, 30.0, 30.0]
    guard.succeeded()
    assert guard.failed(down) == 1.0
    slow = loopguard.Guard("test-slow-loop", first_delay=15.0)
    assert slow.failed(down) == 15.0, "never sooner than the loop's own pace"


def test_a_bug_logs_its_traceback_once(caplog):
    guard = loopguard.Guard("test-logging")

    def fail() -> Exception:
        return _raised(ValueError("the same bug"))  # one place, so one distinct error

    with caplog.at_level(logging.WARNING, logger=loopguard.__name__):
        for _ in range(12):
            guard.failed(fail())
        guard.failed(_raised(KeyError("another bug")))
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert [r.exc_info[0] for r in with_traceback if r.exc_info] == [ValueError, KeyError]
    lines = [r.getMessage() for r in caplog.records if not r.exc_info]
    assert len(lines) == 1 and "seen 10 times" in lines[0]


def test_a_transient_failure_is_one_line(caplog):
    guard = loopguard.Guard("test-transient-log")
    with caplog.at_level(logging.WARNING, logger=loopguard.__name__):
        guard.failed(_raised(redis.exceptions.ConnectionError("Connection refused")))
    [record] = caplog.records
    assert record.levelno == logging.WARNING and not record.exc_info
    assert "ConnectionError: Connection refused" in record.getMessage()


def test_a_loop_that_keeps_failing_with_a_bug_is_unhealthy():
    guard = loopguard.Guard("test-health")
    for _ in range(3 * loopguard.BUGS_BEFORE_UNHEALTHY):
        guard.failed(redis.exceptions.ConnectionError("down"))
        guard.item_failed(KeyError("one task's"), what="one task")
    assert guard.healthy, "transient failures and failed items leave the loop healthy"
    for _ in range(loopguard.BUGS_BEFORE_UNHEALTHY - 1):
        guard.failed(KeyError("x"))
    assert guard.healthy
    guard.failed(KeyError("x"))
    assert not guard.healthy
    guard.succeeded()
    assert guard.healthy


class _Loop:
    """What the probe reads of a loop's asyncio task."""

    def __init__(self, name: str, *, ended: bool = False) -> None:
        self.name, self.ended = name, ended

    def get_name(self) -> str:
        return self.name

    def done(self) -> bool:
        return self.ended


def test_the_liveness_probe_fails_on_an_ended_or_broken_loop():
    sync, sweep = loopguard.Guard("status-sync"), loopguard.Guard("task-sweep")
    memo = kopf.Memo(loops=[_Loop("status-sync"), _Loop("task-sweep")], guards=[sync, sweep])
    assert handlers.loops_alive(memo=memo) == ["status-sync", "task-sweep"]
    for _ in range(loopguard.BUGS_BEFORE_UNHEALTHY):
        sweep.failed(KeyError("x"))
    with pytest.raises(kopf.PermanentError, match="task-sweep failed 5 times in a row with a bug"):
        handlers.loops_alive(memo=memo)
    sweep.succeeded()
    memo.loops[0].ended = True
    with pytest.raises(kopf.PermanentError, match="status-sync ended"):
        handlers.loops_alive(memo=memo)
