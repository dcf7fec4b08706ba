"""Dispatch latency and no-op throughput of longtask, against raw Celery on the same Redis.

It starts the real platform locally (embedded kube-apiserver + etcd, Redis, the operator
process, one worker process with concurrency 2, the gateway) plus a raw Celery worker
(bench/rawcelery.py: longtask's Celery settings, its own queue, concurrency 2), then runs
these arms one after another:

1. Latency, longtask: --samples sequential LongTasks (demo.noop), each created once the
   previous one succeeded. Latency is the worker's `started` event `at` minus the time
   the create call returned. It is split at the operator's `queued` event and at the
   worker's "received" log line (Celery took the message off Redis).
2. Latency, raw Celery: --samples sequential no-op tasks; send_task called -> task start.
3. Throughput, longtask: --tasks LongTasks created at once; from the first create call to
   the last worker `succeeded` event (event-based), and to all CR statuses Succeeded.
4. Throughput, raw Celery: --tasks tasks sent at once; first send_task -> last finish.

Every timestamp is time.time() on this machine. To show where time goes it also reports
CPU seconds per process and kube-apiserver requests per LongTask (bench/probes.py,
bench/cputime.py). Run:

    uv run python bench/dispatch.py [--tasks 200] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cputime
import probes
import rawcelery
import redis
import redis.asyncio as aioredis
from celery import Celery
from kubernetes_asyncio import client, config

from longtask_contracts import events, names
from longtask_dev import binaries, procs
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod

CONCURRENCY = 2  # both arms; the machine has two cores
WARMUP = 5  # tasks per latency arm that are not counted
TASK = "demo.noop"
TARGET_P50_MS, TARGET_P99_MS, TARGET_RATIO = 50.0, 250.0, 0.4
WAIT_SECONDS = 120.0
QUEUED_GRACE = 1.0  # seconds a `queued` event may follow `succeeded`
WORKER, RAW_WORKER = "worker-default-1", "bench-raw"  # process names (Platform names its workers)
Kind = events.Kind


@dataclass
class Sample:
    """One task's wall-clock timestamps (seconds)."""

    task_id: str  # the Celery task id
    called: float  # the create / send_task call began
    returned: float  # the call returned
    queued: float  # NaN for raw Celery, or if the `queued` event never came
    started: float
    finished: float
    received: float = math.nan  # the worker logged "received" (filled in from its log)


@dataclass
class Throughput:
    """Seconds from the first create / send_task call to each milestone of the batch."""

    tasks: int
    submitted: float  # the last create / send_task returned
    finished: float  # the last task finished on its worker (longtask: `succeeded` event)
    last_queued: float | None = None  # longtask: the operator's last `queued` event
    last_started: float | None = None  # longtask: the last `started` event
    statuses: float | None = None  # longtask: every CR status says Succeeded
    without_queued: int = 0  # longtask: tasks whose `queued` event never came


@dataclass
class Recorder:
    """CPU seconds per process and apiserver requests per task, recorded per phase."""

    c: cluster_mod.Cluster
    cpu: cputime.Meter
    api: dict[str, tuple[int, probes.Counts]]

    @classmethod
    def of(cls, c: cluster_mod.Cluster) -> Recorder:
        def pids() -> dict[str, int]:
            return {"bench (this process)": os.getpid(), **{child.name: child.pid for child in c.children}}

        return cls(c, cputime.Meter(pids), {})

    @contextlib.contextmanager
    def phase(self, name: str, *, longtasks: int = 0) -> Iterator[None]:
        """Meter CPU; with `longtasks`, also count apiserver requests per LongTask."""
        before = probes.api_requests(self.c) if longtasks else None
        with self.cpu.phase(name):
            yield
        if before is not None:
            self.api[name] = (longtasks, probes.api_requests(self.c) - before)

    def report(self) -> list[str]:
        return [*self.cpu.report(), "", *probes.api_report(self.api)]


# -- the platform ---------------------------------------------------------------------
def start_raw_worker(c: cluster_mod.Cluster) -> procs.Child:
    log = c.state_dir / "logs" / f"{RAW_WORKER}.log"
    script = Path(rawcelery.__file__)
    child = c.add(
        procs.Child(
            RAW_WORKER, [sys.executable, str(script), c.redis_url, str(CONCURRENCY)], log, env=c.environ()
        )
    )
    procs.wait_until(
        lambda: " ready." in child.log_tail(200),
        timeout=60,
        what="the raw Celery worker to consume",
        child=child,
        interval=0.1,
    )
    return child


def start_everything(c: cluster_mod.Cluster) -> None:
    p = platform_mod.Platform(c).start(workers=0)
    assert p.start_worker(concurrency=CONCURRENCY).name == WORKER
    start_raw_worker(c)


def wait_operator_idle(c: cluster_mod.Cluster, timeout: float = WAIT_SECONDS) -> None:
    """Wait until the operator has read and acknowledged every status-stream entry."""
    r = redis.Redis.from_url(c.redis_url, decode_responses=True)

    def idle() -> bool:
        groups = r.xinfo_groups(names.STATUS_STREAM)
        return all(g["pending"] == 0 and not g["lag"] for g in groups)

    try:
        procs.wait_until(idle, timeout=timeout, what="the operator's status sync to catch up", interval=0.2)
    finally:
        r.close()


# -- the longtask arm -----------------------------------------------------------------
@contextlib.asynccontextmanager
async def kube_and_redis(
    c: cluster_mod.Cluster,
) -> AsyncIterator[tuple[client.CustomObjectsApi, aioredis.Redis]]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(c.kubeconfig), client_configuration=cfg)
    async with client.ApiClient(configuration=cfg) as api:
        r = aioredis.Redis.from_url(c.redis_url)
        try:
            yield client.CustomObjectsApi(api), r
        finally:
            await r.aclose()


async def create(custom: client.CustomObjectsApi, namespace: str, name: str) -> tuple[str, float, float]:
    """Create one LongTask; returns its uid and the wall-clock times around the call."""
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name},
        "spec": {"task": TASK},
    }
    called = time.time()
    obj = await custom.create_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, body
    )
    return obj["metadata"]["uid"], called, time.time()


def first_at(entries: Sequence[tuple[Any, dict[Any, Any]]], seen: dict[Kind, float]) -> None:
    """Record in `seen` the `at` of the first event of each kind in stream `entries`."""
    for _, fields in entries:
        event = events.TaskEvent.decode(fields)
        seen.setdefault(event.kind, event.at)


def succeeded(uid: str, seen: dict[Kind, float]) -> bool:
    """True once the task succeeded; raise if it ended any other way."""
    if Kind.SUCCEEDED in seen:
        return True
    if seen.keys() & {Kind.FAILED, Kind.CANCELLED, Kind.RETRYING}:
        raise RuntimeError(f"LongTask {uid} did not succeed: {sorted(seen)}")
    return False


def complete(uid: str, seen: dict[Kind, float]) -> bool:
    """Succeeded, and its `queued` event is in or overdue: the operator may publish `queued`
    after send_task, so it can follow `succeeded`, or (if that publish failed) never come."""
    return succeeded(uid, seen) and (Kind.QUEUED in seen or time.time() > seen[Kind.SUCCEEDED] + QUEUED_GRACE)


async def wait_succeeded(r: aioredis.Redis, uid: str) -> dict[Kind, float]:
    """Follow one task's event stream until it is complete()."""
    key, last, seen = names.events_stream(uid), "0", dict[Kind, float]()
    deadline = time.monotonic() + WAIT_SECONDS
    while not complete(uid, seen):
        if time.monotonic() > deadline:
            raise TimeoutError(f"LongTask {uid} did not finish; events: {sorted(seen)}")
        reply: Any = await r.xread({key: last}, block=100) or []
        for _, entries in reply:
            first_at(entries, seen)
            last = entries[-1][0]
    return seen


async def longtask_latency(c: cluster_mod.Cluster, namespace: str, samples: int) -> list[Sample]:
    result = []
    async with kube_and_redis(c) as (custom, r):
        for i in range(WARMUP + samples):
            uid, called, returned = await create(custom, namespace, f"lat-{i:05d}")
            seen = await wait_succeeded(r, uid)
            task_id = names.celery_task_id(uid, 1)
            at = [seen.get(kind, math.nan) for kind in (Kind.QUEUED, Kind.STARTED, Kind.SUCCEEDED)]
            result.append(Sample(task_id, called, returned, *at))
    return result[WARMUP:]


async def poll_all_succeeded(r: aioredis.Redis, uids: Sequence[str]) -> dict[str, dict[Kind, float]]:
    """Poll every task's event stream until each is complete()."""
    seen: dict[str, dict[Kind, float]] = {uid: {} for uid in uids}
    pending = set(uids)
    deadline = time.monotonic() + WAIT_SECONDS
    while pending:
        if time.monotonic() > deadline:
            stuck = {uid: sorted(seen[uid]) for uid in sorted(pending)[:5]}
            raise TimeoutError(
                f"{len(pending)} of {len(uids)} LongTasks did not finish; events of some: {stuck}"
            )
        await asyncio.sleep(0.05)
        batch = sorted(pending)
        pipe = r.pipeline(transaction=False)
        for uid in batch:
            pipe.xrange(names.events_stream(uid))
        for uid, entries in zip(batch, await pipe.execute(), strict=True):
            first_at(entries, seen[uid])
            if complete(uid, seen[uid]):
                pending.discard(uid)
    return seen


async def poll_statuses_succeeded(custom: client.CustomObjectsApi, namespace: str, count: int) -> float:
    """Poll the LongTask list every 0.1 s; the time all `count` statuses say Succeeded."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        listed = await custom.list_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL
        )
        now = time.time()
        phases = [(item.get("status") or {}).get("phase") for item in listed["items"]]
        if len(phases) == count and all(p == "Succeeded" for p in phases):
            return now
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the LongTask statuses in {namespace} did not all reach Succeeded")


async def longtask_throughput(
    c: cluster_mod.Cluster, namespace: str, tasks: int, probe: Recorder
) -> Throughput:
    """Create `tasks` LongTasks at once; CPU is metered until the last `succeeded` event
    ("lt tput run") and from then until every status is written ("lt tput status")."""
    async with kube_and_redis(c) as (custom, r):
        with probe.phase("lt tput run", longtasks=tasks):
            began = time.time()
            created = await asyncio.gather(
                *(create(custom, namespace, f"tput-{i:05d}") for i in range(tasks))
            )
            submitted = time.time()
            seen = list((await poll_all_succeeded(r, [uid for uid, _, _ in created])).values())
        with probe.phase("lt tput status", longtasks=tasks):
            status_done = await poll_statuses_succeeded(custom, namespace, tasks)
            await asyncio.to_thread(wait_operator_idle, c)

    def last(kind: Kind) -> float:
        return max(s.get(kind, -math.inf) for s in seen) - began

    return Throughput(
        tasks,
        submitted - began,
        last(Kind.SUCCEEDED),
        last(Kind.QUEUED),
        last(Kind.STARTED),
        status_done - began,
        sum(Kind.QUEUED not in s for s in seen),
    )


# -- the raw Celery arm ---------------------------------------------------------------
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
    app = rawcelery.create_app(c.redis_url, CONCURRENCY)
    r = redis.Redis.from_url(c.redis_url)
    key, result = rawcelery.results_key("latency"), []
    try:
        for i in range(WARMUP + samples):
            task_id = f"raw-latency-{i}"
            called = time.time()
            send_raw(app, "latency", i, task_id)
            returned = time.time()
            popped = r.blpop([key], timeout=WAIT_SECONDS)
            if popped is None:
                raise TimeoutError(f"raw task {i} did not finish")
            seq, started, finished = parse_result(popped[1])
            assert seq == i, f"raw task {seq} finished while waiting for {i}"
            result.append(Sample(task_id, called, returned, math.nan, started, finished))
    finally:
        r.close()
        app.close()
    return result[WARMUP:]


def raw_throughput(c: cluster_mod.Cluster, tasks: int) -> Throughput:
    app = rawcelery.create_app(c.redis_url, CONCURRENCY)
    r = redis.Redis.from_url(c.redis_url)
    key = rawcelery.results_key("throughput")
    try:
        began = time.time()
        for i in range(tasks):
            send_raw(app, "throughput", i, f"raw-throughput-{i}")
        submitted = time.time()
        procs.wait_until(
            lambda: r.llen(key) >= tasks, timeout=WAIT_SECONDS, what="the raw tasks to finish", interval=0.02
        )
        last = max(parse_result(item)[2] for item in r.lrange(key, 0, -1))
    finally:
        r.close()
        app.close()
    return Throughput(tasks, submitted - began, last - began)


# -- report ---------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms_row(label: str, values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values if not math.isnan(v)]
    if not ms:
        return f"  {label:<46}{'n/a':>9}"
    cols = (percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms), max(ms))
    return f"  {label:<46}" + "".join(f"{v:>9.1f}" for v in cols)


def add_received(samples: list[Sample], log: Path) -> None:
    """Fill in when the worker logged each task "received"."""
    received = probes.received_times(log)
    for sample in samples:
        sample.received = received.get(sample.task_id, math.nan)


def diff(samples: list[Sample], a: str, b: str) -> list[float]:
    return [getattr(s, b) - getattr(s, a) for s in samples]


def latency_report(lt: list[Sample], raw: list[Sample]) -> list[str]:
    lt_lat, raw_lat = diff(lt, "returned", "started"), diff(raw, "called", "started")
    ratios = [percentile(lt_lat, p) / percentile(raw_lat, p) for p in (50, 99)]
    lines = [
        f"Dispatch latency, {len(lt)} sequential tasks per arm (ms){'':<1}"
        f"{'p50':>9}{'p99':>9}{'mean':>9}{'max':>9}",
        ms_row("longtask: create returned -> started", lt_lat),
        ms_row("raw Celery: send_task called -> started", raw_lat),
        f"  ratio longtask/raw: {ratios[0]:.1f}x at p50, {ratios[1]:.1f}x at p99",
        ms_row("longtask: create called -> started", diff(lt, "called", "started")),
        "  longtask, step by step:",
        ms_row("  create call (request -> response)", diff(lt, "called", "returned")),
        ms_row("  create returned -> worker received", diff(lt, "returned", "received")),
        ms_row("    create returned -> `queued` event", diff(lt, "returned", "queued")),
        ms_row("    `queued` event -> worker received", diff(lt, "queued", "received")),
        ms_row("  worker received -> `started` event", diff(lt, "received", "started")),
        ms_row("  `started` -> `succeeded` (no-op task)", diff(lt, "started", "finished")),
        "  raw Celery, step by step:",
        ms_row("  send_task call", diff(raw, "called", "returned")),
        ms_row("  send_task returned -> worker received", diff(raw, "returned", "received")),
        ms_row("  worker received -> task started", diff(raw, "received", "started")),
        ms_row("  started -> finished (no-op task)", diff(raw, "started", "finished")),
        '  ("received" is Celery\'s log line, 1 ms resolution)',
    ]
    if missing := sum(math.isnan(sample.queued) for sample in lt):
        lines.append(f"  warning: {missing} LongTasks ran but never got a `queued` event")
    if percentile(diff(lt, "queued", "started"), 50) < 0:
        lines.append(
            "  note: this build stamps the `queued` event after send_task, so it can follow `started`"
        )
    return lines


def throughput_report(lt: Throughput, raw: Throughput) -> list[str]:
    def row(label: str, seconds: float | None) -> str:
        assert seconds is not None
        return f"  {label:<46}{seconds:>9.2f}{lt.tasks / seconds:>9.1f}"

    assert lt.statuses is not None
    lines = [
        f"Throughput, {lt.tasks} no-op tasks submitted at once{'':<11}{'s':>9}{'tasks/s':>9}",
        row("longtask: all created (create calls returned)", lt.submitted),
        row("longtask: last `queued` event (operator)", lt.last_queued),
        row("longtask: last `started` event (worker)", lt.last_started),
        row("longtask: last `succeeded` event", lt.finished),
        row("longtask: all CR statuses Succeeded", lt.statuses),
        row("raw Celery: all sent", raw.submitted),
        row("raw Celery: last task finished", raw.finished),
        f"  ratio longtask/raw in tasks/s: {raw.finished / lt.finished:.2f}x (events),"
        f" {raw.finished / lt.statuses:.2f}x (CR statuses)",
    ]
    if lt.without_queued:
        lines.append(f"  warning: {lt.without_queued} LongTasks ran but never got a `queued` event")
    return lines


def errors_report(operator_log: Path) -> list[str]:
    errors = probes.handler_errors(operator_log)
    if not errors:
        return ["Operator handler errors: none"]
    return ["Operator handler errors (Kopf retries a failed handler after its backoff)"] + [
        f"  {count:>5} x {message}" for message, count in errors.most_common(5)
    ]


def targets_report(lt: list[Sample], lt_tp: Throughput, raw_tp: Throughput) -> list[str]:
    lat = [(s.started - s.returned) * 1000 for s in lt]
    ratio = raw_tp.finished / lt_tp.finished
    checks = [
        (
            f"p50 latency <= {TARGET_P50_MS:.0f} ms",
            f"{percentile(lat, 50):.1f} ms",
            percentile(lat, 50) <= TARGET_P50_MS,
        ),
        (
            f"p99 latency <= {TARGET_P99_MS:.0f} ms",
            f"{percentile(lat, 99):.1f} ms",
            percentile(lat, 99) <= TARGET_P99_MS,
        ),
        (f"throughput >= {TARGET_RATIO}x raw Celery (events)", f"{ratio:.2f}x", ratio >= TARGET_RATIO),
    ]
    return ["Targets"] + [f"  {name:<46}{got:>12}   {'met' if ok else 'MISSED'}" for name, got, ok in checks]


# -- main -----------------------------------------------------------------------------
def run(c: cluster_mod.Cluster, tasks: int, samples: int) -> list[str]:
    for namespace in ("bench-latency", "bench-throughput"):
        c.kubectl("create", "namespace", namespace)
    probe = Recorder.of(c)
    progress("longtask latency")
    with probe.phase("lt latency", longtasks=WARMUP + samples):
        lt_lat = asyncio.run(longtask_latency(c, "bench-latency", samples))
        wait_operator_idle(c)
    progress("raw Celery latency")
    with probe.phase("raw latency"):
        raw_lat = raw_latency(c, samples)
    progress("longtask throughput")
    lt_tp = asyncio.run(longtask_throughput(c, "bench-throughput", tasks, probe))
    progress("raw Celery throughput")
    with probe.phase("raw throughput"):
        raw_tp = raw_throughput(c, tasks)
    add_received(lt_lat, c.child(WORKER).log_path)
    add_received(raw_lat, c.child(RAW_WORKER).log_path)
    return [
        f"longtask {code_version()}; {os.cpu_count()} CPUs; worker concurrency {CONCURRENCY} in both arms",
        "",
        *latency_report(lt_lat, raw_lat),
        "",
        *throughput_report(lt_tp, raw_tp),
        "",
        *probe.report(),
        "",
        *errors_report(c.child("operator").log_path),
        "",
        *targets_report(lt_lat, lt_tp, raw_tp),
    ]


def code_version() -> str:
    """The commit of the longtask code that runs, and whether it has uncommitted changes."""
    git = ["git", "-C", str(binaries.REPO_ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return f"{binaries.REPO_ROOT} (not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False
    )
    return f"commit {head.stdout.strip()}" + (" + uncommitted changes" if dirty.stdout.strip() else "")


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks of the throughput arms")
    parser.add_argument("--samples", type=int, default=200, help="tasks of the latency arms")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep kubeconfig and logs here (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    progress("starting the cluster and the platform")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        start_everything(c)
        lines = run(c, args.tasks, args.samples)
        progress("stopping")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
