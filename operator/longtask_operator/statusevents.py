"""The Kubernetes Events the status sync posts, each in the background.

Events are posted only for what people look for in `kubectl describe`: Retrying, Failed
(saying if dead-lettered) and Cancelled when the phase is folded in, even if coalescing
never writes that phase (a retry that ran again within the interval), and
StatusWriteFailed when a task's status write is parked; the routine Queued, Running and
Succeeded hops are in the status and cost no request. It must not write statuses, and
must never hold up the reading of the stream (nothing here is awaited by the loop).

Posting is bounded: `at_once` posters take Events from a queue of at most `backlog`; when a
burst (a mass cancel, a failing dependency failing every task) overflows the queue, the
Events beyond it are dropped and counted in the log, never a coroutine or a request each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from longtask_operator import fold, kube

log = logging.getLogger(__name__)
AT_ONCE = 4  # Event POSTs in flight at once
BACKLOG = 1000  # Events waiting for a poster; beyond that they are dropped


class EventPoster:
    def __init__(self, *, kube: kube.Kube, at_once: int = AT_ONCE, backlog: int = BACKLOG) -> None:
        self.kube = kube
        self.at_once = max(1, at_once)
        self.dropped = 0  # Events that found the queue full
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue(max(1, backlog))
        self._posters: list[asyncio.Task[None]] = []  # started with the first Event

    def phase_reached(self, *, uid: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """An Event for a phase people look for (failed, retrying, cancelled); routine hops
        get none (fold.event_message)."""
        event = fold.event_message(status)
        if event is None:
            return
        message, warning = event
        self._post(
            namespace=namespace,
            name=name,
            uid=uid,
            reason=str(status.get("phase")),
            message=message,
            warning=warning,
        )

    def write_failed(self, *, uid: str, namespace: str, name: str, reason: str, body: str) -> None:
        """A Warning Event: this task's status cannot be written for now (it is parked)."""
        self._post(
            namespace=namespace,
            name=name,
            uid=uid,
            reason="StatusWriteFailed",
            message=f"the operator cannot write this task's status ({reason}): {body}; "
            "it retries with backoff, other tasks are not affected",
            warning=True,
        )

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _post(self, **event: Any) -> None:
        """Queue one Event (kube.post_event's arguments) for the posters, as a function, so a
        dropped one is never a coroutine."""
        job = functools.partial(self.kube.post_event, **event)
        if not self._posters:
            self._posters = [
                asyncio.create_task(self._poster(), name=f"event-poster-{i}") for i in range(self.at_once)
            ]
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("%d Kubernetes Events dropped: more are due than can be posted", self.dropped)

    async def _poster(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()
            except Exception as exc:  # post_event logs its own failures; anything else must not end a poster
                log.warning("posting an Event failed: %r", exc)
            finally:
                self._queue.task_done()

    async def flushed(self) -> None:
        """Return once every queued Event has been posted (or has failed)."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop the posters (Events still queued are dropped)."""
        for poster in self._posters:
            poster.cancel()
        await asyncio.gather(*self._posters, return_exceptions=True)
        self._posters = []
