"""The Kubernetes Events the status sync posts, each in the background.

Events are posted only for what people look for in `kubectl describe`: Retrying, Failed
(saying if dead-lettered) and Cancelled when the phase is folded in, even if coalescing
never writes that phase (a retry that ran again within the interval), and
StatusWriteFailed when a task's status write is parked; the routine Queued, Running and
Succeeded hops are in the status and cost no request. It must not write statuses, and
must never hold up the reading of the stream (nothing here is awaited by the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from longtask_operator import fold, kube


class EventPoster:
    def __init__(self, *, kube: kube.Kube) -> None:
        self.kube = kube
        self._posting: set[asyncio.Future[None]] = set()  # kept referenced until they end

    def phase_reached(self, *, uid: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """An Event for a phase people look for (failed, retrying, cancelled); routine hops
        get none (fold.event_message)."""
        event = fold.event_message(status)
        if event is None:
            return
        message, warning = event
        self._post(
            self.kube.post_event(
                namespace=namespace,
                name=name,
                uid=uid,
                reason=str(status.get("phase")),
                message=message,
                warning=warning,
            )
        )

    def write_failed(self, *, uid: str, namespace: str, name: str, reason: str, body: str) -> None:
        """A Warning Event: this task's status cannot be written for now (it is parked)."""
        self._post(
            self.kube.post_event(
                namespace=namespace,
                name=name,
                uid=uid,
                reason="StatusWriteFailed",
                message=f"the operator cannot write this task's status ({reason}): {body}; "
                "it retries with backoff, other tasks are not affected",
                warning=True,
            )
        )

    def _post(self, job: Coroutine[Any, Any, None]) -> None:
        future = asyncio.ensure_future(job)
        self._posting.add(future)
        future.add_done_callback(self._posting.discard)
