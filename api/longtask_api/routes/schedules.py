"""The /v1/namespaces/{namespace}/schedules resource: LongTaskSchedules with their latest runs,
a run now (trigger), suspend and resume.

Each route needs the Kubernetes verbs kubectl would need for the same (access.Route): list
(or get) on longtaskschedules, and list on longtasks for the runs shown with them; create
on longtasks to trigger a run (it is a create, rate-limited and checked against the pool
like one); patch on longtaskschedules to suspend or resume. Handlers read and write
through the Kube client; what a schedule shows is scheduleviews', what a manual run is
manualruns'.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Query, status

from longtask_api import deps, errors, metrics, scheduleviews, schemas
from longtask_contracts import logs, manualruns, models, poolaccess, tracing
from longtask_runtime import kube, kubeerrors

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/namespaces/{namespace}/schedules",
    tags=["schedules"],
    responses=errors.RESPONSES
    | {404: {"model": errors.Problem, "description": "No such schedule (or namespace)."}},
)
RUNS_SHOWN = 5  # runs shown per schedule unless ?runs= says otherwise
RUNS_SHOWN_MAX = 50
Runs = Annotated[
    int, Query(ge=0, le=RUNS_SHOWN_MAX, description="How many of each schedule's latest runs to show.")
]


# The apiserver makes a CRD's storage on the first request for it, and answers a LIST with
# 429 ("storage is (re)initializing", Retry-After 1) until that storage's cache is filled:
# right after LongTaskSchedules are installed, the first listing of them meets it. client-go
# (kubectl) waits and lists again; so does the gateway, up to LIST_TRIES times, then answers
# 503 as for any apiserver that cannot serve.
LIST_TRIES = 8
LIST_RETRY_SECONDS = 0.5
T = TypeVar("T")


async def _listed(call: Callable[[], Awaitable[T]]) -> T:
    """`call` (a LIST), again after a 429 while tries are left."""
    for _ in range(LIST_TRIES - 1):
        try:
            return await call()
        except kubeerrors.Unavailable as exc:
            if exc.status != 429:
                raise
            log.info("listing again in %g s: %s", LIST_RETRY_SECONDS, exc)
            await asyncio.sleep(LIST_RETRY_SECONDS)
    return await call()


async def _runs(tasks: kube.Kube, *, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Every LongTask in `namespace` that `selector` selects (all pages)."""
    found: list[dict[str, Any]] = []
    more: str | None = None
    while True:
        page = await _listed(
            functools.partial(
                tasks.longtask_page,
                namespace=namespace,
                limit=kube.PAGE,
                continue_token=more,
                label_selector=selector,
            )
        )
        found += page.get("items", [])
        more = (page.get("metadata") or {}).get("continue")
        if not more:
            return found


@router.get("", operation_id="listSchedules")
async def list_schedules(
    namespace: deps.Namespace,
    tasks: deps.Tasks,
    _caller: deps.MayListSchedules,
    _runs_caller: deps.MayList,
    runs: Runs = RUNS_SHOWN,
) -> schemas.ScheduleList:
    """The namespace's LongTaskSchedules by name, each with its next run (as the operator last
    wrote it) and its latest runs, newest first. Needs `list` on longtaskschedules and on
    longtasks."""
    schedules = await _listed(lambda: tasks.schedules(namespace=namespace))
    found = await _runs(tasks, namespace=namespace, selector=manualruns.selector()) if schedules else []
    return scheduleviews.listing(schedules, runs=found, shown=runs)


@router.get("/{name}", operation_id="getSchedule")
async def get_schedule(
    namespace: deps.Namespace,
    name: deps.ScheduleName,
    tasks: deps.Tasks,
    _caller: deps.MayGetSchedule,
    _runs_caller: deps.MayList,
    runs: Runs = RUNS_SHOWN,
) -> schemas.SchedulePublic:
    """One LongTaskSchedule with its latest runs. Needs `get` on longtaskschedules and `list`
    on longtasks."""
    obj = await tasks.get_schedule(namespace=namespace, name=name)
    found = await _runs(tasks, namespace=namespace, selector=manualruns.selector(name))
    return scheduleviews.public(obj, runs=found, shown=runs)


@router.post(
    "/{name}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="triggerSchedule",
    responses={
        403: {
            "model": errors.Problem,
            "description": "Kubernetes does not allow this caller `create` on longtasks here, or the "
            "template's pool is held by a WorkerPool whose namespaceSelector does not admit this namespace.",
        },
        409: {
            "model": errors.Problem,
            "description": "A run of this schedule was already triggered in this second (its name is taken).",
        },
        422: {
            "model": errors.Problem,
            "description": "Invalid input; or the schedule's template is not a LongTask the apiserver takes.",
        },
        429: {"model": errors.Problem, "description": "This caller creates too fast; see Retry-After."},
    },
)
async def trigger_schedule(
    namespace: deps.Namespace,
    name: deps.ScheduleName,
    tasks: deps.Tasks,
    pool_access: deps.PoolAccess,
    first_sends: deps.FirstSends,
    background: BackgroundTasks,
    _caller: deps.MayCreate,
    _quota: deps.CreateQuota,
) -> schemas.TaskCreated:
    """Run the schedule now: create a LongTask from its template, owned by it and labelled
    longtask.io/schedule=<name>, named <name>-manual-<unix seconds>, whatever its suspend and
    concurrencyPolicy say (as `kubectl create job --from=cronjob/...`). Answers like a create:
    follow `links.events`. Needs `create` on longtasks, as a create does."""
    with logs.task(namespace=namespace), tracing.span("longtask.trigger") as span:
        schedule = await tasks.get_schedule(namespace=namespace, name=name)
        template = (schedule.get("spec") or {}).get("template") or {}
        pool = str(
            (template.get("spec") or {}).get("pool") or models.LongTaskSpec.model_fields["pool"].default
        )
        verdict = pool_access.claims.verdict(namespace=namespace, pool=pool)
        if verdict.outcome is poolaccess.Outcome.REFUSED:
            raise errors.Forbidden(verdict.message)
        resource = manualruns.manual_run(
            schedule,
            now=datetime.datetime.now(datetime.UTC),
            annotations=tracing.to_annotations(tracing.inject()),
        )
        obj = await tasks.create(namespace=namespace, body=resource)
        run, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
        span.set_attributes(tracing.task_attributes(namespace=namespace, name=run, uid=uid))
        logs.update(name=run, uid=uid)
        log.info("triggered %s/%s: created %s", namespace, name, run)
        if first_sends is not None:  # once the answer has left; the operator sends it if this fails
            background.add_task(first_sends.start, obj)
    metrics.TASKS_CREATED.inc()
    return schemas.created(namespace, name=run, uid=uid)


async def _suspend(tasks: kube.Kube, *, namespace: str, name: str, suspend: bool) -> schemas.SchedulePublic:
    obj = await tasks.patch_schedule(namespace=namespace, name=name, body={"spec": {"suspend": suspend}})
    log.info("%s %s/%s", "suspended" if suspend else "resumed", namespace, name)
    return scheduleviews.public(obj, runs=None, shown=0)


@router.post("/{name}/suspend", operation_id="suspendSchedule")
async def suspend_schedule(
    namespace: deps.Namespace, name: deps.ScheduleName, tasks: deps.Tasks, _caller: deps.MayPatchSchedule
) -> schemas.SchedulePublic:
    """Set spec.suspend: no new run is created until it is resumed (runs already created go on;
    a trigger still runs it). The answer has no runs (`runs` null). Needs `patch` on
    longtaskschedules, as `kubectl patch` would."""
    return await _suspend(tasks, namespace=namespace, name=name, suspend=True)


@router.post("/{name}/resume", operation_id="resumeSchedule")
async def resume_schedule(
    namespace: deps.Namespace, name: deps.ScheduleName, tasks: deps.Tasks, _caller: deps.MayPatchSchedule
) -> schemas.SchedulePublic:
    """Clear spec.suspend: the operator creates runs again. The answer has no runs (`runs` null).
    Needs `patch` on longtaskschedules."""
    return await _suspend(tasks, namespace=namespace, name=name, suspend=False)
