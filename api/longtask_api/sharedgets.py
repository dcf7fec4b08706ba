"""Concurrent GETs of one LongTask share one apiserver call: the opening read of a task's
event stream, which a crowd of watchers (a page many people open, a reconnect storm after a
gateway restart) would otherwise pay once each.

A GET that starts while another GET of the same task is under way in this process waits for
that one and gets its answer, or its error, so the answer may be older than the request by
at most the time one GET takes; no answer is kept once its GET has landed. Each caller's
access is checked before (deps.MayGet), never shared. It must not shape answers nor keep
anything after a GET lands.
"""

from __future__ import annotations

import asyncio
from typing import Any

from longtask_runtime import kube


class SharedGets:
    def __init__(self, tasks: kube.Kube) -> None:
        self._tasks = tasks
        self._flights: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        """The LongTask, as tasks.get answers (or raises) it; read-only: callers share it."""
        wanted = (namespace, name)
        flight = self._flights.get(wanted)
        if flight is None:
            flight = asyncio.ensure_future(self._tasks.get(namespace=namespace, name=name))
            self._flights[wanted] = flight
            flight.add_done_callback(lambda done: self._land(wanted, done))
        # shield: a caller that goes away does not cancel the GET the others wait for.
        return await asyncio.shield(flight)

    def _land(self, wanted: tuple[str, str], done: asyncio.Future[dict[str, Any]]) -> None:
        if self._flights.get(wanted) is done:
            del self._flights[wanted]
        if not done.cancelled():
            done.exception()  # retrieved: nobody may be waiting any more
