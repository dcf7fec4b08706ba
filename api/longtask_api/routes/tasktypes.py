"""GET /v1/tasktypes: the tasks workers serve and their parameters (for forms and clients).

Workers publish these when they start (longtask_worker.signatures); the gateway only reads
names.TASK_TYPES and imports no worker code. Any authenticated caller may read them.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from longtask_api import deps, errors
from longtask_contracts import names, tasktypes

router = APIRouter(prefix="/v1/tasktypes", tags=["task types"], responses=errors.RESPONSES)


class TaskTypeList(BaseModel):
    items: list[tasktypes.TaskType]


@router.get("", operation_id="listTaskTypes")
async def list_task_types(redis: deps.Redis, _caller: deps.Caller) -> TaskTypeList:
    """Registered tasks by name, with each parameter's kind, default and whether it is required."""
    raw = await redis.hvals(names.TASK_TYPES)
    items = sorted((tasktypes.TaskType.model_validate_json(v) for v in raw), key=lambda t: t.name)
    return TaskTypeList(items=items)
