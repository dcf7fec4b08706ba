"""GET /v1/namespaces/{namespace}/workerpools: the pools, their queued and running work and size.

Read-only; needs `list` on workerpools.longtask.io in the namespace.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from longtask_api import deps
from longtask_api.routes.tasks import ERRORS

router = APIRouter(prefix="/v1/namespaces/{namespace}/workerpools", tags=["worker pools"])


class WorkerPoolPublic(BaseModel):
    name: str
    pool: str | None = None
    deployment: str | None = None
    min_replicas: int | None = Field(default=None, alias="minReplicas")
    max_replicas: int | None = Field(default=None, alias="maxReplicas")
    queued: int | None = None
    running: int | None = None
    desired_replicas: int | None = Field(default=None, alias="desiredReplicas")
    replicas: int | None = None


class WorkerPoolList(BaseModel):
    items: list[WorkerPoolPublic]


def _public(obj: dict[str, Any]) -> WorkerPoolPublic:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    fields = {k: spec.get(k) for k in ("deployment", "minReplicas", "maxReplicas")}
    fields |= {k: status.get(k) for k in ("pool", "queued", "running", "desiredReplicas", "replicas")}
    return WorkerPoolPublic.model_validate({"name": obj["metadata"]["name"], **fields})


@router.get(
    "",
    operation_id="listWorkerPools",
    response_model=WorkerPoolList,
    response_model_by_alias=True,
    responses=ERRORS,
)
async def list_worker_pools(
    namespace: deps.Namespace, pools: deps.Pools, _caller: deps.MayListPools
) -> WorkerPoolList:
    """The namespace's WorkerPools with queued and running attempts and replicas. Needs `list`."""
    return WorkerPoolList(items=[_public(o) for o in await pools.workerpools(namespace=namespace)])
