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
from longtask_runtime import kube, reflector

log = logging.getLogger(__name__)

KINDS = (names.POOL_PLURAL, "namespaces")


def _backoff() -> Callable[[Exception], float]:
    """The default failure handler: log, then wait longer after each failure in a row."""
    backoff = reflector.Backoff()

    def failed(exc: Exception) -> float:
        delay = backoff.failed()
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
        """LIST every object of `kind` (KINDS) and WATCH them, forever (reflector.reflect;
        after an error, LIST again `failed(exc)` seconds later)."""
        await reflector.reflect(
            what=kind,
            list_objects=lambda: self.kube.cluster_list(kind),
            watch_objects=lambda version: self.kube.cluster_events(kind, resource_version=version),
            listed=lambda items: self._listed(kind, items),
            changed=lambda event_type, obj: self._event(kind, event_type, obj),
            failed=failed or _backoff(),
            succeeded=succeeded,
        )

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
