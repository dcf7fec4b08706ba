"""Keeps a poolaccess.Claims current: a LIST, then a WATCH, of every WorkerPool and every
Namespace in the cluster, for as long as the component runs.

Shared by the gateway (it refuses at create a LongTask whose pool does not admit its
namespace, and never sends one first) and the operator (it fails such a task instead of
sending it, and writes the Conflict condition). Cluster-wide on purpose, whatever
namespaces the operator looks after: a pool held by a WorkerPool in a namespace outside
them is held all the same. (Kopf's own WorkerPool watch, which feeds the autoscaler,
follows only the operator's namespaces, and the gateway has no Kopf.)

It decides nothing (poolaccess does) and writes nothing. Until the first LIST of
WorkerPools is in, every verdict is UNKNOWN, so no caller sends or refuses on a guess.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from longtask_contracts import names, poolaccess
from longtask_runtime import kube, kubeerrors

log = logging.getLogger(__name__)

KINDS = (names.POOL_PLURAL, "namespaces")
_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


def _backoff() -> Callable[[Exception], float]:
    """The default failure handler: log, then wait longer after each failure in a row."""
    failures = 0

    def failed(exc: Exception) -> float:
        nonlocal failures
        delay = _BACKOFF_SECONDS[min(failures, len(_BACKOFF_SECONDS) - 1)]
        failures += 1
        log.warning("pool access watch failed (%s: %s); again in %g s", type(exc).__name__, exc, delay)
        return delay

    return failed


class PoolWatch:
    """Follows WorkerPools and Namespaces into `claims`; `changed` is called after each
    change of the WorkerPools (the operator's Conflict writer wakes on it)."""

    def __init__(
        self,
        *,
        kube: kube.Kube,
        claims: poolaccess.Claims | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.kube = kube
        self.claims = claims if claims is not None else poolaccess.Claims()
        self.changed = changed
        # Set once both the WorkerPools and the Namespaces were listed (the operator's task
        # watch waits for it, so that a restart decides with claims, not without).
        self.ready = asyncio.Event()

    async def follow(
        self,
        kind: str,
        *,
        failed: Callable[[Exception], float] | None = None,
        succeeded: Callable[[], None] = lambda: None,
    ) -> None:
        """LIST every object of `kind` (KINDS) and WATCH them, forever; after an expired
        watch (410) or an error, LIST again (after `failed(exc)` seconds for an error)."""
        on_failure = failed or _backoff()
        while True:
            try:
                items, version = await self.kube.cluster_list(kind)
                self._listed(kind, items)
                succeeded()
                while True:  # each watch ends after kube.WATCH_SECONDS: go on from where it was
                    async for event_type, obj in self.kube.cluster_events(kind, resource_version=version):
                        version = obj["metadata"]["resourceVersion"]
                        if event_type in ("ADDED", "MODIFIED", "DELETED"):
                            self._event(kind, event_type, obj)
                        succeeded()
            except kubeerrors.Expired:
                log.info("the watch of %s expired; listing again", kind)
            except Exception as exc:  # list again, after a while
                await asyncio.sleep(on_failure(exc))

    def _listed(self, kind: str, items: list[dict[str, Any]]) -> None:
        if kind == names.POOL_PLURAL:
            self.claims.list_pools(items)
            self.changed()
        else:
            self.claims.list_namespaces(items)
        if self.claims.pools_listed and self.claims.namespaces_listed:
            self.ready.set()

    def _event(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        if kind == names.POOL_PLURAL:
            self.claims.pool_event(event_type, obj)
            self.changed()
        else:
            self.claims.namespace_event(event_type, obj)

    def start(self) -> list[asyncio.Task[None]]:
        """Both watches as tasks, with the default backoff (the gateway's way; the operator
        runs follow() under its loop guards)."""
        return [asyncio.create_task(self.follow(kind), name=f"pool-access-{kind}") for kind in KINDS]
