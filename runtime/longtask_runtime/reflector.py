"""The LIST-then-WATCH loop every cache of Kubernetes objects here runs (client-go calls it a
reflector): the operator's informers (a pool's Deployment and pods) and the pool-access
watches of WorkerPools and Namespaces (poolwatch.py).

LIST once, then WATCH from the list's resourceVersion (bookmarks keep that version fresh
while nothing changes); when the server ends a watch (every kube.WATCH_SECONDS) it watches
on from the last version seen, without a LIST; only an expired version (410) or a failure
lists again, a failure after the delay `failed` returns. It keeps no objects and decides
nothing: the callbacks do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)

Lister = Callable[[], Awaitable[tuple[list[dict[str, Any]], str]]]
Watcher = Callable[[str], AsyncIterator[tuple[str, dict[str, Any]]]]


async def reflect(
    *,
    what: str,
    list_objects: Lister,
    watch_objects: Watcher,
    listed: Callable[[list[dict[str, Any]]], None],
    changed: Callable[[str, dict[str, Any]], None],
    failed: Callable[[Exception], float],
    succeeded: Callable[[], None] = lambda: None,
) -> None:
    """Forever: `listed(items)` after each LIST, `changed(type, object)` for each ADDED,
    MODIFIED or DELETED event, `succeeded()` after each LIST and event (bookmarks
    included); after an error, sleep `failed(error)` seconds and LIST again. `what` names
    the objects in log lines."""
    while True:
        try:
            items, version = await list_objects()
            listed(items)
            succeeded()
            while True:  # each watch ends after WATCH_SECONDS: go on from the last version
                async for event_type, obj in watch_objects(version):
                    version = str(obj["metadata"]["resourceVersion"])
                    if event_type in ("ADDED", "MODIFIED", "DELETED"):
                        changed(event_type, obj)
                    succeeded()
        except kubeerrors.Expired:
            log.info("the watch of %s expired; listing again", what)
        except Exception as exc:  # list again, after a while
            await asyncio.sleep(failed(exc))


class Backoff:
    """Delays after failures in a row: doubling from `first` up to `most`; reset() after a
    success starts again from `first`."""

    def __init__(self, *, first: float = 1.0, most: float = 30.0) -> None:
        self.first, self.most = first, most
        self.next = first

    def failed(self) -> float:
        delay, self.next = self.next, min(self.next * 2, self.most)
        return delay

    def reset(self) -> None:
        self.next = self.first
