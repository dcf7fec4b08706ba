"""FastAPI dependencies as Annotated aliases, so route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Path, Request

from longtask_api import kube, settings

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
NS_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


def get_tasks(request: Request) -> kube.LongTasks:
    tasks: kube.LongTasks = request.app.state.tasks
    return tasks


def get_redis(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client


Tasks = Annotated[kube.LongTasks, Depends(get_tasks)]
Redis = Annotated[aioredis.Redis, Depends(get_redis)]
Settings = Annotated[settings.ApiSettings, Depends(settings.get_settings)]
Namespace = Annotated[str, Path(pattern=NS_PATTERN, max_length=63, description="Kubernetes namespace.")]
TaskName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253, description="LongTask name.")]
