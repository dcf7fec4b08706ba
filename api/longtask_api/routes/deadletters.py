"""The dead-letter queue: list parked tasks and replay them (one, or all).

Access is the subresource `longtasks/deadletters` of longtask.io: `list` to list, `patch`
to replay (a replay patches the LongTask's annotation). Without `?namespace=` the answer
holds only the namespaces where the caller has that right (every one with a cluster-wide
grant). A replay sets the LongTask's `longtask.io/replay` annotation, exactly what
`kubectl annotate` does, so the operator replays it the same way whoever asked.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

from fastapi import APIRouter, Query, status

from longtask_api import access, deps, errors, schemas
from longtask_api.routes.tasks import ERRORS
from longtask_contracts import ledger, names
from longtask_runtime import kubeerrors

router = APIRouter(prefix="/v1/deadletters", tags=["dead letters"])

NamespaceFilter = Annotated[
    str | None, Query(max_length=63, pattern=deps.NS_PATTERN, description="Only this namespace.")
]


async def _entries(
    redis: deps.Redis, guard: deps.Guard, caller: deps.Caller, namespace: str | None, action: access.Action
) -> list[ledger.DeadLetter]:
    """The entries of `namespace` (all if None) that `caller` may see with `action`, oldest first."""
    if namespace is not None:
        await guard.require(caller, namespace=namespace, action=action)
    raw = await redis.hvals(names.DLQ)
    entries = [ledger.DeadLetter.model_validate_json(value) for value in raw]
    entries = [e for e in entries if namespace in (None, e.namespace)]
    allowed = await guard.allowed_namespaces(caller, (e.namespace for e in entries), action=action)
    return sorted((e for e in entries if e.namespace in allowed), key=lambda e: e.at)


@router.get("", operation_id="listDeadLetters", response_model=schemas.DeadLetterList, responses=ERRORS)
async def list_dead_letters(
    redis: deps.Redis, guard: deps.Guard, caller: deps.Caller, namespace: NamespaceFilter = None
) -> schemas.DeadLetterList:
    """Tasks that exhausted their retries or crashed their workers, oldest first.

    Needs `list` on `longtasks/deadletters` (in the namespace, or shows only allowed ones).
    """
    action = access.Route.LIST_DEADLETTERS.value
    return schemas.DeadLetterList(items=await _entries(redis, guard, caller, namespace, action))


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
    namespace: deps.Namespace, name: deps.TaskName, redis: deps.Redis, tasks: deps.Tasks, _: deps.MayReplay
) -> schemas.DeadLetterList:
    """Replay one dead-lettered task as its next attempt. Needs `patch` on `longtasks/deadletters`."""
    entries = [ledger.DeadLetter.model_validate_json(value) for value in await redis.hvals(names.DLQ)]
    matching = [e for e in entries if (e.namespace, e.name) == (namespace, name)]
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
    guard: deps.Guard,
    caller: deps.Caller,
    namespace: NamespaceFilter = None,
) -> schemas.DeadLetterList:
    """Replay every dead-lettered task (of one namespace, if given) the caller may replay.

    Needs `patch` on `longtasks/deadletters`; returns those replayed.
    """
    action = access.Route.REPLAY_DEADLETTERS.value
    replayed = []
    for entry in await _entries(redis, guard, caller, namespace, action):
        with contextlib.suppress(kubeerrors.NotFound):  # deleted meanwhile: the operator drops its entry
            await _replay(tasks, entry)
            replayed.append(entry)
    return schemas.DeadLetterList(items=replayed)
