"""How every background loop of the operator treats a failure, in one place.

A failure is transient when trying again later can succeed: Redis unreachable, timing
out or loading its data (redis' ConnectionError, TimeoutError, BusyLoadingError), the
apiserver unavailable, throttling or failing (kubeerrors.Unavailable: 5xx, 429, no
answer) or a conflict (kubeerrors.Conflict): whatever kubeerrors marks `retryable`. It
is logged in one line and retried with backoff. Anything else is a bug: its traceback is
logged once per distinct error (its type and where it was raised), then a line at its
10th, 100th, ... occurrence, never the same traceback forever. Both kinds are counted in
`longtask_operator_loop_errors_total{loop, kind}`.

A loop whose rounds keep failing with a bug (BUGS_BEFORE_UNHEALTHY in a row, no round
succeeding in between), or that ended, fails the liveness probe (problems()), so
Kubernetes restarts the operator. A failure of one item of a round (one task, one pool,
one event), which the loop skips and retries later, is counted and logged the same way
but leaves the loop healthy: one bad task must not restart the operator for all others.

It must not decide what a loop does after a failure beyond how long it waits (starting
over, skipping an item stay the loop's), and it talks to nothing.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterable

import redis.exceptions

from longtask_operator import metrics
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)

# Rounds failing with a bug in a row after which the loop counts as broken.
BUGS_BEFORE_UNHEALTHY = 5
_MAX_TRANSIENT_DELAY_SECONDS = 5.0
_MAX_BUG_DELAY_SECONDS = 30.0
_MAX_KNOWN_ERRORS = 256  # distinct errors remembered per loop (their tracebacks were logged)
# redis' BusyLoadingError is a ConnectionError; the builtins are what a socket raises.
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later can succeed (see the module doc); else it is a bug."""
    if isinstance(exc, kubeerrors.KubeError):
        return exc.retryable
    return isinstance(exc, _TRANSIENT)


class Guard:
    """The failure record of one loop (named as its asyncio task is)."""

    def __init__(self, loop: str, *, first_delay: float = 1.0) -> None:
        self.loop = loop
        self.first_delay = max(first_delay, 0.1)  # the wait after one failed round; doubles after each
        self.failures_in_a_row = 0  # rounds, of either kind
        self.bugs_in_a_row = 0  # rounds failed with a bug since the last good one
        self.last_bug = ""
        self._seen: dict[tuple[str, str], int] = {}  # distinct bug -> times seen

    @property
    def healthy(self) -> bool:
        return self.bugs_in_a_row < BUGS_BEFORE_UNHEALTHY

    def succeeded(self) -> None:
        """A round went through: the backoff and the streak of bugs start over."""
        self.failures_in_a_row = self.bugs_in_a_row = 0

    def failed(self, exc: Exception) -> float:
        """A whole round failed: count and log it; returns the seconds to wait before the next."""
        self.failures_in_a_row += 1
        bug = not is_transient(exc)
        # Short for what is transient (Redis or the apiserver back in a few seconds is met
        # within a few seconds), longer for a bug, which waiting does not fix.
        ceiling = _MAX_BUG_DELAY_SECONDS if bug else _MAX_TRANSIENT_DELAY_SECONDS
        # Never sooner than the loop's own pace (first_delay).
        delay = max(self.first_delay, min(ceiling, self.first_delay * 2.0 ** (self.failures_in_a_row - 1)))
        self._record(exc, what=f"{self.loop} failed", retry=f"retrying in {delay:.1f} s")
        if bug:
            self.bugs_in_a_row += 1
            self.last_bug = f"{type(exc).__name__}: {exc}"[:300]
        return delay

    def item_failed(self, exc: Exception, *, what: str) -> None:
        """One item of a round failed (`what`: which, and that it is tried again later); the
        round goes on and the loop stays healthy."""
        self._record(exc, what=what, retry="")

    def _record(self, exc: Exception, *, what: str, retry: str) -> None:
        """Count and log `exc`."""
        if is_transient(exc):
            metrics.LOOP_ERRORS.labels(loop=self.loop, kind="transient").inc()
            log.warning("%s (%s: %s)%s", what, type(exc).__name__, exc, f"; {retry}" if retry else "")
            return
        metrics.LOOP_ERRORS.labels(loop=self.loop, kind="bug").inc()
        key = _where(exc)
        seen = self._seen.get(key, 0) + 1
        if seen == 1 and len(self._seen) >= _MAX_KNOWN_ERRORS:
            self._seen.clear()  # bounded: an error forgotten here is logged in full once more
        self._seen[key] = seen
        if seen == 1:
            log.error(
                "%s with an unexpected error (a bug?)%s", what, f"; {retry}" if retry else "", exc_info=exc
            )
        elif _is_power_of_ten(seen):
            log.error("%s: %s: %s (seen %d times; its traceback was logged once)", what, key[0], exc, seen)


def problems(loops: Iterable[asyncio.Task[None]], guards: Iterable[Guard]) -> list[str]:
    """What makes the operator unhealthy: loops that ended, loops that keep failing with a bug."""
    found = [f"{loop.get_name()} ended" for loop in loops if loop.done()]
    found += [
        f"{g.loop} failed {g.bugs_in_a_row} times in a row with a bug; last: {g.last_bug}"
        for g in guards
        if not g.healthy
    ]
    return found


def _where(exc: BaseException) -> tuple[str, str]:
    """A distinct error: its type and the place it was raised (the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return type(exc).__qualname__, place


def _is_power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1
