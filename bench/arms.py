"""The latency, submit and burst arms of bench/dispatch.py, longtask and raw Celery alike.

Each longtask arm runs in a namespace of its own, inside a Recorder phase (CPU and
apiserver requests), and ends settled: every CR status says what its events say and the
operator has acknowledged every status-stream entry, so no arm's work spills into the next.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ltclient
import rawcelery
import recorder
import redis
from celery import Celery

from longtask_contracts import names
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from longtask_dev import procs

CONCURRENCY = 2  # Celery worker concurrency in both arms; the machine has two cores
WARMUP = 5  # tasks per latency arm that are not counted
IN_FLIGHT = 64  # create calls in flight in the submit, burst and scale arms
NOOP: ltclient.Spec = {"task": "demo.noop"}
Kind = ltclient.Kind


def wait_seconds(tasks: int) -> float:
    """How long any one wait of an arm of `tasks` tasks may take before the bench gives up."""
    return 120.0 + tasks / 5


@dataclass
class Ctx:
    """What every arm uses: the platform, the bench's clients, the event log and the recorder."""

    c: cluster_mod.Cluster
    p: platform_mod.Platform
    cl: ltclient.Clients
    log: ltclient.EventLog
    rec: recorder.Recorder

    async def settle(
        self, namespace: str, want: dict[str, str], *, label_selector: str | None = None
    ) -> float:
        """Wait until the CRs' phases are as wanted and the operator has read every event;
        returns when the phases were seen."""
        seen = await self.cl.wait_phases(
            namespace, want, within=wait_seconds(len(want)), label_selector=label_selector
        )
        await asyncio.to_thread(wait_operator_idle, self.c)
        return seen


def wait_operator_idle(c: cluster_mod.Cluster, timeout: float = 120.0) -> None:
    """Wait until the operator has read and acknowledged every status-stream entry."""
    r = redis.Redis.from_url(c.redis_url, decode_responses=True)

    def idle() -> bool:
        groups = r.xinfo_groups(names.STATUS_STREAM)
        return all(g["pending"] == 0 and not g["lag"] for g in groups)

    try:
        procs.wait_until(idle, timeout=timeout, what="the operator's status sync to catch up", interval=0.2)
    finally:
        r.close()


@dataclass
class Sample:
    """One task's wall-clock timestamps (seconds)."""

    task_id: str  # the Celery task id
    called: float  # the create (POST, send_task) call began
    returned: float  # the call returned
    queued: float  # NaN for raw Celery, or if the `queued` event never came
    started: float
    finished: float
    received: float = math.nan  # the worker logged "received" (filled in from its log)


def sample(log: ltclient.EventLog, made: ltclient.Created) -> Sample:
    at = [log.first(made.uid, kind) for kind in (Kind.QUEUED, Kind.STARTED, Kind.SUCCEEDED)]
    return Sample(names.celery_task_id(made.uid, 1), made.called, made.returned, *at)


# -- latency: one task at a time ---------------------------------------------------------
async def lt_latency(ctx: Ctx, path: str, samples: int) -> list[Sample]:
    """WARMUP + `samples` LongTasks (demo.noop) by `path`, each created once the previous
    one succeeded; the warm-up ones are not returned."""
    namespace = f"bench-lat-{path}"
    create = ctx.cl.creator(path, namespace)
    made: list[ltclient.Created] = []
    async with ctx.rec.phase(f"lat {path}", tasks=WARMUP + samples):
        for i in range(WARMUP + samples):
            made.append(await create(f"lat-{i:05d}", NOOP))
            await ctx.log.wait([made[-1].uid], Kind.SUCCEEDED, within=wait_seconds(1))
        await ctx.settle(namespace, {m.name: "Succeeded" for m in made})
    return [sample(ctx.log, m) for m in made[WARMUP:]]


def send_raw(app: Celery, run: str, seq: int, task_id: str) -> None:
    """send_task with the options the operator uses for a default spec (operator dispatch.py)."""
    app.send_task(
        rawcelery.TASK,
        args=[run, seq],
        task_id=task_id,
        queue=rawcelery.QUEUE,
        priority=0,
        soft_time_limit=3600,
        time_limit=3630,
    )


def parse_result(item: bytes | str) -> tuple[int, float, float]:
    seq, started, finished = (item.decode() if isinstance(item, bytes) else item).split()
    return int(seq), float(started), float(finished)


def raw_latency(c: cluster_mod.Cluster, samples: int) -> list[Sample]:
    """WARMUP + `samples` raw Celery no-op tasks, one at a time."""
    app = rawcelery.create_app(c.redis_url, CONCURRENCY)
    r = redis.Redis.from_url(c.redis_url)
    key, result = rawcelery.results_key("latency"), []
    try:
        for i in range(WARMUP + samples):
            task_id = f"raw-latency-{i}"
            called = time.time()
            send_raw(app, "latency", i, task_id)
            returned = time.time()
            popped = r.blpop([key], timeout=wait_seconds(1))
            if popped is None:
                raise TimeoutError(f"raw task {i} did not finish")
            seq, started, finished = parse_result(popped[1])
            assert seq == i, f"raw task {seq} finished while waiting for {i}"
            result.append(Sample(task_id, called, returned, math.nan, started, finished))
    finally:
        r.close()
        app.close()
    return result[WARMUP:]


# -- submit latency at 64 concurrent -----------------------------------------------------
async def submit(ctx: Ctx, path: str, count: int) -> list[ltclient.Created]:
    """`count` LongTasks by `path`, IN_FLIGHT create calls at a time; each call's
    request -> response is the figure. The tasks run; the arm ends settled."""
    namespace = f"bench-submit-{path}"
    specs = [(f"sub-{i:05d}", NOOP) for i in range(count)]
    async with ctx.rec.phase(f"sub {path}", tasks=count):
        made = await ctx.cl.create_many(ctx.cl.creator(path, namespace), specs, IN_FLIGHT)
        await ctx.log.wait([m.uid for m in made], Kind.SUCCEEDED, within=wait_seconds(count))
        await ctx.settle(namespace, {m.name: "Succeeded" for m in made})
    return made


# -- bursts ---------------------------------------------------------------------------------
@dataclass
class Burst:
    """Seconds from the first create / send_task call to each milestone of one burst."""

    tasks: int
    submitted: float  # the last create / send_task returned
    finished: float  # the last task finished (longtask: the last `succeeded` event `at`)
    last_queued: float = math.nan  # longtask: the operator's last `queued` event
    last_started: float = math.nan  # longtask: the last `started` event
    statuses: float = math.nan  # longtask: every CR status seen Succeeded (on a watch)
    without_queued: int = 0  # longtask: tasks that never got a `queued` event

    @property
    def cr_lag(self) -> float:
        """From the last `succeeded` event until every CR status said Succeeded."""
        return self.statuses - self.finished


async def lt_burst(ctx: Ctx, tasks: int) -> Burst:
    """`tasks` LongTasks created directly, IN_FLIGHT at a time; the CR phases are read
    (one LIST, then a WATCH) only once the last `succeeded` event is in."""
    namespace = f"bench-burst-{tasks}"
    specs = [(f"burst-{i:05d}", NOOP) for i in range(tasks)]
    async with ctx.rec.phase(f"burst {tasks}", tasks=tasks):
        began = time.time()
        made = await ctx.cl.create_many(ctx.cl.creator("direct", namespace), specs, IN_FLIGHT)
        submitted = time.time()
        uids = [m.uid for m in made]
        await ctx.log.wait(uids, Kind.SUCCEEDED, within=wait_seconds(tasks))
        statuses = await ctx.settle(namespace, {m.name: "Succeeded" for m in made})

    def last(kind: Kind) -> float:
        return ctx.log.last(uids, kind) - began

    return Burst(
        tasks,
        submitted - began,
        last(Kind.SUCCEEDED),
        last(Kind.QUEUED),
        last(Kind.STARTED),
        statuses - began,
        sum(math.isnan(ctx.log.first(uid, Kind.QUEUED)) for uid in uids),
    )


def raw_burst(c: cluster_mod.Cluster, tasks: int) -> Burst:
    """`tasks` raw Celery no-op tasks sent in a loop; first send_task -> last finish."""
    app = rawcelery.create_app(c.redis_url, CONCURRENCY)
    r = redis.Redis.from_url(c.redis_url)
    run = f"burst-{tasks}"
    key = rawcelery.results_key(run)
    try:
        began = time.time()
        for i in range(tasks):
            send_raw(app, run, i, f"raw-{run}-{i}")
        submitted = time.time()
        procs.wait_until(
            lambda: r.llen(key) >= tasks,
            timeout=wait_seconds(tasks),
            what="the raw tasks to finish",
            interval=0.02,
        )
        last = max(parse_result(item)[2] for item in r.lrange(key, 0, -1))
    finally:
        r.close()
        app.close()
    return Burst(tasks, submitted - began, last - began)


def uids_of(made: Sequence[ltclient.Created]) -> list[str]:
    return [m.uid for m in made]
