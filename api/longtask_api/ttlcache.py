"""A small bounded cache whose entries expire; pure data structure, no I/O and no locking.

The gateway runs on one event loop, so no lock is needed; a clock can be passed in for tests.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """At most `size` entries, each forgotten `ttl` seconds after it was put; oldest evicted first."""

    def __init__(self, *, ttl: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: collections.OrderedDict[Hashable, tuple[float, V]] = collections.OrderedDict()

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        """(True, value) for a live entry; (False, None) when absent or expired."""
        found = self._entries.get(key)
        if found is None:
            return False, None
        expires, value = found
        if self.clock() >= expires:
            del self._entries[key]
            return False, None
        return True, value

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl <= 0 or self.size <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (self.clock() + self.ttl, value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
