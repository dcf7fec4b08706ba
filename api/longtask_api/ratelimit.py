"""Per-caller token buckets (task creation's rate limit); pure arithmetic, no I/O.

Each gateway replica keeps its own buckets, so N replicas allow up to N times the rate;
the limit is there to stop one runaway client from flooding etcd, not to bill anyone.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable


class Buckets:
    """A token bucket per key: `burst` tokens at most, refilled at `rate` per second.

    At most `size` keys are tracked (the least recently seen is forgotten, i.e. refilled).
    """

    def __init__(
        self, *, rate: float, burst: int, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.size = size
        self.clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 if granted, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> int:
    """The Retry-After header's whole seconds (at least 1) for a wait in seconds."""
    return max(1, math.ceil(wait))
