"""The /v1/namespaces/{namespace}/tasks resource: create, read, list, cancel, its event log, SSE
and a batch's items.

Each route needs one Kubernetes verb on longtasks.longtask.io in the path's namespace
(access.Route): create, get (the task, its items, its event log and its events), list,
patch (cancel).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, status
from sse_starlette import EventSourceResponse

from longtask_api import (
    batchinput,
    deps,
    errors,
    idempotency,
    items,
    metrics,
    patterns,
    schemas,
    sse,
    uploads,
)
from longtask_contracts import batch, itempages, logs, models, names, phases, poolaccess, tracing
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/namespaces/{namespace}/tasks", tags=["tasks"], responses=errors.RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="createTask",
    responses={
        400: {"model": errors.Problem, "description": "A malformed Idempotency-Key (or two of them)."},
        403: {
            "model": errors.Problem,
            "description": "Kubernetes does not allow this caller `create` here, or the task's pool "
            "is held by a WorkerPool whose namespaceSelector does not admit this namespace.",
        },
        409: {
            "model": errors.Problem,
            "description": "The name is taken by another task; or (with Retry-After) a request with this "
            "Idempotency-Key is still being processed: retry.",
        },
        413: {
            "model": errors.Problem,
            "description": "The body is over the limit (Content-Length or chunked).",
        },
        422: {
            "model": errors.Problem,
            "description": "Invalid input, including a body that is not JSON (`errors` names each "
            "field); or an Idempotency-Key already used with another body.",
        },
        429: {"model": errors.Problem, "description": "This caller creates too fast; see Retry-After."},
    },
)
async def create_task(
    namespace: deps.Namespace,
    body: schemas.TaskCreate,
    tasks: deps.Tasks,
    first_sends: deps.FirstSends,
    pool_access: deps.PoolAccess,
    background: BackgroundTasks,
    caller: deps.MayCreate,
    _quota: deps.CreateQuota,
    redis: deps.Redis,
    cfg: deps.Settings,
    key: deps.IdempotencyKey = None,
) -> schemas.TaskCreated:
    """Create a LongTask and return at once; follow `links.events` for its progress.

    Needs `create` on `longtasks.longtask.io` in the namespace; rate-limited per caller. With an
    `Idempotency-Key`, a retry of the same body answers the same task (docs/idempotency.md).
    A task whose pool is held by a WorkerPool that does not admit the namespace is refused
    (403), see docs/security.md. With `items` it is a batch (docs/batches.md): up to
    LONGTASK_MAX_BATCH_ITEMS items, in spec.items if they fit in the object, else stored in
    Redis first and named by spec.itemsFrom; bad items are a 422 and nothing is stored.
    """
    with logs.task(namespace=namespace), tracing.span("longtask.create") as span:
        encoded = batchinput.check(body, max_items=cfg.max_batch_items)
        verdict = pool_access.claims.verdict(namespace=namespace, pool=body.spec.pool)
        if verdict.outcome is poolaccess.Outcome.REFUSED:
            raise errors.Forbidden(verdict.message)
        # Everything is checked: only now is anything written. Items too large for the object
        # are stored first, so the operator finds them whenever it sees the LongTask.
        upload = None
        if encoded is not None and not schemas.fits_inline(encoded):
            upload = await uploads.store(redis, encoded=encoded)
        resource = body.to_resource(items_from=upload)
        # The dispatch (the gateway's or the operator's) continues this span's trace (one
        # trace, request to worker): sending.first_attempt reads it from these annotations.
        if annotations := tracing.to_annotations(tracing.inject()):
            resource["metadata"]["annotations"] = annotations
        obj: dict[str, Any] | None
        try:
            if key is None:
                obj = made = await tasks.create(namespace=namespace, body=resource)
                name, uid = made["metadata"]["name"], made["metadata"]["uid"]
            else:
                record, obj = await idempotency.create(
                    tasks=tasks,
                    redis=redis,
                    claim=idempotency.claim(key=key, caller=caller, namespace=namespace, body=body),
                    resource=resource,
                    keep_seconds=cfg.idempotency_seconds,
                )
                name, uid = record.name, record.uid
        except (errors.ApiError, kubeerrors.KubeError) as exc:
            if upload is not None and _refused(exc):  # no LongTask names it
                await uploads.discard(redis, upload)
            raise
        span.set_attributes(tracing.task_attributes(namespace=namespace, name=name, uid=uid))
        logs.update(name=name, uid=uid)
        if obj is None:  # an earlier or concurrent request with this Idempotency-Key created it
            log.info("%s/%s again (Idempotency-Key): the same answer", namespace, name)
            if upload is not None:  # that task names its own upload
                await uploads.discard(redis, upload)
            return schemas.created(namespace, name=name, uid=uid)
        log.info("created %s/%s (%s)", namespace, name, body.spec.task)
        if first_sends is not None:  # once the answer has left; the operator sends it if this fails
            background.add_task(first_sends.start, obj)
    metrics.TASKS_CREATED.inc()
    return schemas.created(namespace, name=name, uid=uid)


def _refused(exc: errors.ApiError | kubeerrors.KubeError) -> bool:
    """Whether a failed create certainly made no LongTask (a 4xx answer). A create that got
    no answer (a timeout) may have made one, which needs its upload: that one is kept (until
    its TTL if no batch starts from it)."""
    status = exc.status
    return status is not None and 400 <= status < 500


@router.get(
    "/{name}",
    operation_id="getTask",
)
async def get_task(
    namespace: deps.Namespace, name: deps.TaskName, tasks: deps.Tasks, _caller: deps.MayGet
) -> schemas.TaskPublic:
    """The task's spec and current status (phase, progress, result or error). Needs `get`."""
    return schemas.public(await tasks.get(namespace=namespace, name=name))


@router.get("", operation_id="listTasks")
async def list_tasks(
    namespace: deps.Namespace,
    tasks: deps.Tasks,
    _caller: deps.MayList,
    phase: Annotated[phases.Phase | None, Query(description="Only tasks in this phase.")] = None,
    task: Annotated[
        str | None,
        Query(
            max_length=128,
            pattern=models.TASK_NAME_PATTERN,  # what a task may be named: nothing a selector misreads
            description="Only tasks running this task name.",
        ),
    ] = None,
    label_selector: Annotated[
        str | None,
        Query(
            alias="labelSelector",
            max_length=1024,
            pattern=patterns.LABEL_SELECTOR,
            description="Kubernetes label selector (`a=b,c in (d,e),!f`; no `>`/`<`).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    continue_token: Annotated[
        str | None,
        Query(
            alias="continue",
            max_length=4096,
            description="The previous page's `continue` (opaque: any other string is a 422).",
        ),
    ] = None,
) -> schemas.TaskList:
    """Tasks in the namespace, newest pages first as Kubernetes returns them, paginated. Needs `list`."""
    selectors = [f"status.phase={phase.value}"] if phase else []
    if task:
        selectors.append(f"spec.task={task}")
    page = await tasks.longtask_page(
        namespace=namespace,
        limit=limit,
        continue_token=continue_token,
        field_selector=",".join(selectors) or None,
        label_selector=label_selector,
    )
    return schemas.TaskList.model_validate(
        {
            "items": [schemas.public(o) for o in page.get("items", [])],
            "continue": (page.get("metadata") or {}).get("continue") or None,
        }
    )


@router.post(
    "/{name}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="cancelTask",
)
async def cancel_task(
    namespace: deps.Namespace, name: deps.TaskName, tasks: deps.Tasks, _caller: deps.MayCancel
) -> schemas.TaskPublic:
    """Ask for cancellation (sets spec.cancel); the phase becomes Cancelled when it took effect.

    Needs `patch` on `longtasks.longtask.io`, as `kubectl patch` to set spec.cancel would.
    """
    return schemas.public(await tasks.patch(namespace=namespace, name=name, body={"spec": {"cancel": True}}))


@router.get(
    "/{name}/events",
    operation_id="streamTaskEvents",
    response_class=EventSourceResponse,
    responses=sse.answers(
        "Server-Sent Events: `id` is the Redis stream id, `event` the kind "
        "(queued, started, progress, succeeded, failed, cancelled), `data` a "
        "ProgressEvent. The stream ends after the terminal event."
    )
    | sse.TOO_MANY_STREAMS,
)
async def stream_task_events(
    namespace: deps.Namespace,
    name: deps.TaskName,
    gets: deps.TaskGets,
    hub: deps.Hub,
    cfg: deps.Settings,
    _caller: deps.MayGet,
    _stream: deps.OpenStream,
    last_event_id: deps.LastEventId = None,
    after: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Same as the Last-Event-ID header (which wins when both are given).",
            json_schema_extra={"pattern": patterns.STREAM_ID},
        ),
    ] = None,
) -> EventSourceResponse:
    """Live status and progress; reconnect with Last-Event-ID to resume exactly. Needs `get`."""
    start = sse.parse_last_event_id(last_event_id or after) or "0"
    obj = await gets.get(namespace=namespace, name=name)  # one GET for a crowd connecting at once
    return sse.response(
        sse.stream(hub=hub, obj=obj, after=start, idle_seconds=cfg.sse_ping_seconds),
        ping_seconds=cfg.sse_ping_seconds,
    )


@router.get("/{name}/log", operation_id="getTaskLog")
async def get_task_log(
    namespace: deps.Namespace,
    name: deps.TaskName,
    tasks: deps.Tasks,
    redis: deps.Redis,
    _caller: deps.MayGet,
    limit: Annotated[int, Query(ge=1, le=names.TASK_STREAM_MAXLEN, description="At most this many.")] = 1000,
) -> schemas.EventLog:
    """The task's event log so far, oldest first, with the SSE ids (empty once cleaned up). Needs `get`."""
    obj = await tasks.get(namespace=namespace, name=name)
    entries: Any = await redis.xrange(names.events_stream(obj["metadata"]["uid"]), count=limit)
    return schemas.EventLog(items=[sse.log_entry(entry_id, fields) for entry_id, fields in entries])


@router.get(
    "/{name}/items",
    operation_id="listTaskItems",
    responses={404: {"model": errors.Problem, "description": "No such task, or the task is not a batch."}},
)
async def list_task_items(
    namespace: deps.Namespace,
    name: deps.TaskName,
    tasks: deps.Tasks,
    redis: deps.Redis,
    _caller: deps.MayGet,
    phase: Annotated[batch.ItemPhase | None, Query(description="Only items in this phase.")] = None,
    limit: Annotated[int, Query(ge=1, le=itempages.PAGE_MAX, description="Page size.")] = 100,
    continue_token: Annotated[
        str | None,
        Query(
            alias="continue",
            max_length=64,
            description="The previous page's `continue` (opaque: any other string is a 422).",
        ),
    ] = None,
) -> schemas.ItemList:
    """A batch's items by index, with each one's phase, attempts, result or error. Needs `get`.

    phase=Failed reads the failed items directly; another phase looks at a bounded stretch of
    indexes per page, so a page may hold fewer than `limit` items and still have a `continue`.
    Item records go with the task (its TTL).
    """
    obj = await tasks.get(namespace=namespace, name=name)
    total = itempages.item_count(obj.get("spec") or {})
    if total is None:
        raise errors.NotFound(f"task {name} is not a batch (it has no items)")
    try:
        start = itempages.decode_token(continue_token)
    except itempages.BadToken:
        raise errors.Invalid(
            "the continue token is not one this listing gave",
            [errors.FieldError(field="continue", message="pass the previous page's continue as it was")],
        ) from None
    status_phase = (obj.get("status") or {}).get("phase")
    entries, next_index = await items.page(
        redis,
        uid=obj["metadata"]["uid"],
        total=total,
        phase=phase,
        limit=limit,
        start=start,
        task_ended=status_phase in {p.value for p in phases.TERMINAL},
    )
    return schemas.ItemList.model_validate(
        {
            "items": entries,
            "continue": itempages.encode_token(next_index) if next_index is not None else None,
        }
    )
