"""A cache of the objects one selector picks (a pool's Deployment, or its pods), kept
current by LIST then WATCH, as client-go's informers are: the autoscaler decides from it
instead of reading the apiserver on every wake.

The loop is longtask_runtime.reflector's: LIST once, then WATCH on from the last version
seen, LIST again only after a 410 or a failure (after a backoff, counted and logged as an
item of its owner's loop: loopguard.py). So an unchanging object costs one WATCH request
per WATCH_SECONDS, not a GET per decision. After a failure the cache keeps what it last
saw until the next LIST replaces it.

It must not decide anything nor write to the apiserver; the calls are kube.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from longtask_operator import kube, loopguard
from longtask_runtime import reflector

_FIRST_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0


class Informer:
    """The `kind` objects ("deployments" or "pods") of `namespace` the selectors select,
    by name, in `objects` (plain dicts without managedFields); `on_change` is called after
    every change (the first LIST included)."""

    def __init__(
        self,
        *,
        kube: kube.Kube,
        kind: str,
        namespace: str,
        on_change: Callable[[], None],
        guard: loopguard.Guard,
        field_selector: str = "",
        label_selector: str = "",
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.field_selector = field_selector
        self.label_selector = label_selector
        self.on_change = on_change
        self.guard = guard  # its owner's: failures are counted and logged as that loop's items
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = False  # True once the first LIST is in (objects may be stale after a failure)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Informer:
        """Start following (a task of the running event loop); stop() ends it."""
        what = f"{self.kind} in {self.namespace} ({self.field_selector or self.label_selector})"
        self._task = asyncio.create_task(self._follow(), name=f"informer {what}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def put(self, obj: dict[str, Any]) -> None:
        """Keep an object the caller just wrote (the apiserver's reply) until the watch
        brings that object again, so that a decision made meanwhile sees the write."""
        self.objects[obj["metadata"]["name"]] = _trimmed(obj)

    async def _follow(self) -> None:
        what = f"{self.kind} in {self.namespace}"
        backoff = reflector.Backoff(first=_FIRST_BACKOFF_SECONDS, most=_MAX_BACKOFF_SECONDS)

        def failed(exc: Exception) -> float:
            delay = backoff.failed()
            self.guard.item_failed(exc, what=f"the watch of {what} failed; listing in {delay:g} s")
            return delay

        await reflector.reflect(
            what=what,
            list_objects=lambda: self.kube.listing(
                kind=self.kind,
                namespace=self.namespace,
                field_selector=self.field_selector,
                label_selector=self.label_selector,
            ),
            watch_objects=lambda version: self.kube.changes(
                kind=self.kind,
                namespace=self.namespace,
                resource_version=version,
                field_selector=self.field_selector,
                label_selector=self.label_selector,
            ),
            listed=self._listed,
            changed=self._changed,
            failed=failed,
            succeeded=backoff.reset,
        )

    def _listed(self, items: list[dict[str, Any]]) -> None:
        self.objects = {obj["metadata"]["name"]: _trimmed(obj) for obj in items}
        self.synced = True
        self.on_change()

    def _changed(self, event_type: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if event_type == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = _trimmed(obj)
        self.on_change()


def _trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields (nobody here reads them; they are most of a
    pod's bytes)."""
    meta = obj.get("metadata") or {}
    if "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
