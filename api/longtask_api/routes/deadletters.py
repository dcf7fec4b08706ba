"""The dead-letter queue: list parked tasks (a page at a time) and replay them (one, or all).

No request reads the whole queue at once: a listing is one page of HSCAN (`limit`, and a
`continue` cursor), a replay-all walks it page by page, a replay of one reads its entry.

Access is the subresource `longtasks/deadletters` of longtask.io: `list` to list, `patch`
to replay (a replay patches the LongTask's annotation). Without `?namespace=` the answer
holds only the namespaces where the caller has that right (every one with a cluster-wide
grant). A replay sets the LongTask's `longtask.io/replay` annotation, exactly what
`kubectl annotate` does, so the operator replays it the same way whoever asked.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from longtask_api import access, deps, errors, patterns, schemas
from longtask_contracts import ledger, names
from longtask_runtime import kubeerrors

router = APIRouter(prefix="/v1/deadletters", tags=["dead letters"], responses=errors.RESPONSES)

REPLAY_PAGE = 100  # entries read at once by a replay of them all
MAX_CURSOR = 2**64 - 1  # Redis's scan cursors are unsigned 64-bit numbers

NamespaceFilter = Annotated[
    str | None, Query(max_length=63, pattern=patterns.NAMESPACE, description="Only this namespace.")
]


async def _scan(redis: deps.Redis, *, cursor: int, limit: int) -> tuple[list[ledger.DeadLetter], int]:
    """Entries from HSCAN `cursor` on, about `limit` (HSCAN's COUNT is a hint), and the
    cursor to go on from (0: that was all)."""
    entries: list[ledger.DeadLetter] = []
    while True:
        reply: Any = await redis.hscan(names.DLQ, cursor=cursor, count=limit)
        cursor, found = reply
        entries.extend(ledger.DeadLetter.model_validate_json(value) for value in found.values())
        if cursor == 0 or len(entries) >= limit:
            return entries, cursor


async def _visible(
    entries: list[ledger.DeadLetter],
    *,
    guard: deps.Guard,
    caller: deps.Caller,
    namespace: str | None,
    action: access.Action,
) -> list[ledger.DeadLetter]:
    """Those of `entries` in `namespace` (all if None) that `caller` may see with `action`, oldest first."""
    entries = [e for e in entries if namespace in (None, e.namespace)]
    allowed = await guard.allowed_namespaces(caller, (e.namespace for e in entries), action=action)
    return sorted((e for e in entries if e.namespace in allowed), key=lambda e: e.at)


Limit = Annotated[
    int,
    Query(
        ge=1,
        le=1000,
        description="About this many entries are read for one page (Redis HSCAN's COUNT, a hint); "
        "fewer are shown when some are of namespaces not asked for or not allowed.",
    ),
]
Continue = Annotated[
    str | None,
    Query(
        alias="continue",
        max_length=20,
        pattern=r"^[1-9][0-9]{0,19}$",
        description="The previous page's `continue` (opaque; anything else is a 422).",
    ),
]


@router.get("", operation_id="listDeadLetters")
async def list_dead_letters(
    redis: deps.Redis,
    guard: deps.Guard,
    caller: deps.Caller,
    namespace: NamespaceFilter = None,
    limit: Limit = 100,
    continue_token: Continue = None,
) -> schemas.DeadLetterList:
    """Tasks that exhausted their retries or crashed their workers, a page at a time.

    Each page is oldest first; pages come in Redis's scan order, so follow `continue` to the
    end to see them all (an entry parked or removed meanwhile may be missed or seen twice;
    one present throughout is seen). A page may be empty and still have a `continue`.
    Needs `list` on `longtasks/deadletters` (in the namespace, or shows only allowed ones).
    """
    action = access.Route.LIST_DEADLETTERS.value
    if namespace is not None:
        await guard.require(caller, namespace=namespace, action=action)
    start = int(continue_token or 0)
    if start > MAX_CURSOR:
        raise errors.Invalid(
            "the continue token is not one this listing gave",
            [errors.FieldError(field="continue", message="not a cursor of the dead-letter queue")],
        )
    entries, cursor = await _scan(redis, cursor=start, limit=limit)
    items = await _visible(entries, guard=guard, caller=caller, namespace=namespace, action=action)
    return schemas.DeadLetterList.model_validate(
        {"items": items, "continue": str(cursor) if cursor else None}
    )


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
)
async def replay_dead_letter(
    namespace: deps.Namespace, name: deps.TaskName, redis: deps.Redis, tasks: deps.Tasks, _: deps.MayReplay
) -> schemas.DeadLetterList:
    """Replay one dead-lettered task as its next attempt. Needs `patch` on `longtasks/deadletters`."""
    raw = None
    with contextlib.suppress(kubeerrors.NotFound):  # no such task: none in the queue either
        obj = await tasks.get(namespace=namespace, name=name)  # its uid keys its entry: no scan
        raw = await redis.hget(names.DLQ, obj["metadata"]["uid"])
    if raw is None:
        raise errors.NotFound(f"task {namespace}/{name} is not in the dead-letter queue")
    entry = ledger.DeadLetter.model_validate_json(raw)
    await _replay(tasks, entry)
    return schemas.DeadLetterList(items=[entry])


@router.post(
    "/replay",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="replayAllDeadLetters",
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
    if namespace is not None:
        await guard.require(caller, namespace=namespace, action=action)
    replayed = []
    cursor = 0
    while True:  # a page at a time: the whole queue is never in memory at once
        entries, cursor = await _scan(redis, cursor=cursor, limit=REPLAY_PAGE)
        for entry in await _visible(entries, guard=guard, caller=caller, namespace=namespace, action=action):
            with contextlib.suppress(kubeerrors.NotFound):  # deleted meanwhile: the operator drops its entry
                await _replay(tasks, entry)
                replayed.append(entry)
        if cursor == 0:
            return schemas.DeadLetterList(items=replayed)
