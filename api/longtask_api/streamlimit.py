"""How many live streams (SSE and WebSocket) each caller holds open in one gateway process.

Pure bookkeeping on the event loop, no I/O and no locking. A stream takes a slot before it
starts and gives it back however it ends; a caller at its limit gets TooManyRequests (429)
until one of its streams ends. Each gateway replica counts its own streams.
"""

from __future__ import annotations

import collections

from longtask_api import errors

# A stream ends when its client goes away, which no one can foretell: this is a guess.
RETRY_AFTER_SECONDS = 5


class Slot:
    """One open stream of one caller; release() is idempotent."""

    def __init__(self, owner: OpenStreams, key: str) -> None:
        self._owner = owner
        self._key = key
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._owner._give_back(self._key)


class OpenStreams:
    """At most `per_caller` open streams per caller key (0: no limit)."""

    def __init__(self, *, per_caller: int) -> None:
        self.per_caller = per_caller
        self._open: collections.Counter[str] = collections.Counter()

    def take(self, key: str) -> Slot:
        """A slot for one more stream of `key`, or TooManyRequests when it holds its limit."""
        if self.per_caller > 0 and self._open[key] >= self.per_caller:
            raise errors.TooManyRequests(
                f"this caller has {self._open[key]} streams open, the most one gateway allows "
                "(LONGTASK_STREAMS_PER_CALLER); close one",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self._open[key] += 1
        return Slot(self, key)

    def open(self, key: str) -> int:
        return self._open[key]

    def _give_back(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
