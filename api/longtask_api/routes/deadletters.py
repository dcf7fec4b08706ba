"""The dead-letter queue: list parked tasks and replay them (one, or all).

A replay sets the LongTask's `longtask.io/replay` annotation, exactly what
`kubectl annotate` does, so the operator replays it the same way whoever asked.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

from fastapi import APIRouter, Query, status

from longtask_api import deps, errors, schemas
from longtask_api.routes.tasks import ERRORS
from longtask_contracts import ledger, names

router = APIRouter(prefix="/v1/deadletters", tags=["dead letters"])


async def _entries(redis: deps.Redis, namespace: str | None) -> list[ledger.DeadLetter]:
    raw = await redis.hvals(names.DLQ)
    entries = [ledger.DeadLetter.model_validate_json(value) for value in raw]
    return sorted((e for e in entries if namespace in (None, e.namespace)), key=lambda e: e.at)


@router.get("", operation_id="listDeadLetters", response_model=schemas.DeadLetterList, responses=ERRORS)
async def list_dead_letters(
    redis: deps.Redis,
    namespace: Annotated[str | None, Query(max_length=63, description="Only this namespace.")] = None,
) -> schemas.DeadLetterList:
    """Tasks that exhausted their retries or crashed their workers, oldest first."""
    return schemas.DeadLetterList(items=await _entries(redis, namespace))


async def _replay(tasks: deps.Tasks, entry: ledger.DeadLetter) -> None:
    await tasks.patch(
        namespace=entry.namespace,
        name=entry.name,
        body={"metadata": {"annotations": {names.REPLAY_ANNOTATION: str(time.time())}}},
    )


@router.post(
    "/{namespace}/{name}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="replayDeadLetter",
    response_model=schemas.DeadLetterList,
    responses=ERRORS,
)
async def replay_dead_letter(
    namespace: deps.Namespace, name: deps.TaskName, redis: deps.Redis, tasks: deps.Tasks
) -> schemas.DeadLetterList:
    """Replay one dead-lettered task as its next attempt."""
    matching = [e for e in await _entries(redis, namespace) if e.name == name]
    if not matching:
        raise errors.NotFound(f"task {namespace}/{name} is not in the dead-letter queue")
    await _replay(tasks, matching[0])
    return schemas.DeadLetterList(items=matching)


@router.post(
    "/replay",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="replayAllDeadLetters",
    response_model=schemas.DeadLetterList,
    responses=ERRORS,
)
async def replay_all_dead_letters(
    redis: deps.Redis,
    tasks: deps.Tasks,
    namespace: Annotated[str | None, Query(max_length=63, description="Only this namespace.")] = None,
) -> schemas.DeadLetterList:
    """Replay every dead-lettered task (of one namespace, if given); returns those replayed."""
    replayed = []
    for entry in await _entries(redis, namespace):
        with contextlib.suppress(errors.NotFound):  # deleted meanwhile: the operator drops its entry
            await _replay(tasks, entry)
            replayed.append(entry)
    return schemas.DeadLetterList(items=replayed)
