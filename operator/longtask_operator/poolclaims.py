"""Keeps the operator's pool claims current and shows a lost claim on its WorkerPool.

Three loops: the watches of every WorkerPool and every Namespace (longtask_runtime.
poolwatch, into one poolaccess.Claims that the task watch and sweep decide with), and the
writer of the `Conflict` condition. The writer wakes after each change of the WorkerPools
and patches each WorkerPool in the operator's namespaces whose Conflict condition is not
what poolaccess says: True on the newer of two WorkerPools claiming one pool, False once
it holds the pool again (a WorkerPool never in conflict carries none).

A condition is written by merging it by type into the conditions the watch last showed,
as a merge patch conditional on that object's resourceVersion: another writer's
conditions (the autoscaler's Ready, ScalingLimited) are never dropped, and a patch that
lost a race (409) is simply left: the watch event of the other write brings the newer
object, and the writer looks again. If another writer replaces the list without it, the
same event shows the Conflict condition gone and it is written again.

It decides nothing itself (poolaccess does) and must not touch LongTasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from longtask_contracts import poolaccess
from longtask_operator import kube, loopguard, pooldata, scope
from longtask_runtime import kubeerrors, poolwatch

log = logging.getLogger(__name__)


class PoolClaims:
    def __init__(self, *, kube: kube.Kube, namespaces: list[str] | None = None) -> None:
        self.kube = kube
        self.namespaces = namespaces or []
        self.claims = poolaccess.Claims()
        self._changed = asyncio.Event()
        self.watch = poolwatch.PoolWatch(kube=kube, claims=self.claims, changed=self._changed.set)
        self.guards = {kind: loopguard.Guard(f"pool-access-{kind}") for kind in poolwatch.KINDS}
        self.guard = loopguard.Guard("pool-conflicts")

    def loops(self) -> list[tuple[Coroutine[Any, Any, None], loopguard.Guard]]:
        """(coroutine, its guard) of each loop, for the operator's startup."""
        watches = [
            (self.watch.follow(kind, failed=guard.failed, succeeded=guard.succeeded), guard)
            for kind, guard in self.guards.items()
        ]
        return [*watches, (self.write_conditions(), self.guard)]

    async def write_conditions(self) -> None:
        """After each change of the WorkerPools, write the Conflict conditions that differ."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.write_once()
                self.guard.succeeded()
            except Exception as exc:  # after the next change, or a while
                await asyncio.sleep(self.guard.failed(exc))
                self._changed.set()

    async def write_once(self) -> None:
        for obj, conditions in self.claims.conditions_due(now=pooldata.now_rfc3339()):
            meta = obj["metadata"]
            if not scope.in_scope(self.namespaces, meta["namespace"]):
                continue  # another operator's
            try:
                await self.kube.patch_pool_conditions(
                    namespace=meta["namespace"],
                    name=meta["name"],
                    resource_version=meta["resourceVersion"],
                    conditions=conditions,
                )
            except (kubeerrors.Conflict, kubeerrors.NotFound):
                continue  # changed or gone meanwhile: its watch event wakes us again
            wanted = next(c for c in conditions if c["type"] == poolaccess.CONFLICT)
            log.log(
                logging.WARNING if wanted["status"] == "True" else logging.INFO,
                "WorkerPool %s/%s: Conflict=%s: %s",
                meta["namespace"],
                meta["name"],
                wanted["status"],
                wanted["message"],
            )
