"""Dispatch latency, requests per task, throughput and scale of longtask, against raw Celery.

It starts the real platform locally (embedded kube-apiserver + etcd, Redis, the operator
process, one worker process with concurrency 2, the gateway with auth and its create rate
limit off) plus a raw Celery worker (bench/rawcelery.py: longtask's Celery settings, its
own queue, concurrency 2), then runs these arms one after another (0 skips an arm):

1. Latency (--samples): sequential demo.noop LongTasks, each created once the previous
   one succeeded, (a) created directly (kubernetes_asyncio create_namespaced_custom_object,
   what kubectl does) and (b) POSTed to the gateway; and raw Celery's send_task. Headline:
   create called -> the worker's `started` event `at`, p50/p99, split into steps.
2. Submit (--submit): that many creates per path with 64 in flight, direct and through
   the gateway: call -> response p50/p99, and the ratio of the p99s.
3. Bursts (--tasks, --burst): that many LongTasks created directly, 64 in flight, and as
   many raw Celery tasks: tasks/s to the last `succeeded` event, the ratio, and the CR lag
   (last `succeeded` event -> every CR status Succeeded, seen on a watch).
4. Scale (--scale): that many LongTasks kept in the cluster (bench/arms_scale.py):
   operator memory, LIST cost, and a restarted operator's catch-up.

Every longtask arm also reports kube-apiserver requests per task by verb and resource
(bench/recorder.py) and CPU seconds per process (bench/cputime.py); it prints a targets
section last, and asserts nothing. Run:

    uv run python bench/dispatch.py [--samples 200] [--submit 640] [--tasks 200] [--burst 2000]
                                    [--scale 10000] [--restart 100] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import arms
import arms_scale
import ltclient
import rawcelery
import recorder
import report

from longtask_dev import binaries, procs
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod

WORKER, RAW_WORKER = "worker-default-1", "bench-raw"  # process names (Platform names its workers)


# -- the platform -----------------------------------------------------------------------
def start_raw_worker(c: cluster_mod.Cluster) -> procs.Child:
    log = c.state_dir / "logs" / f"{RAW_WORKER}.log"
    script = Path(rawcelery.__file__)
    child = c.add(
        procs.Child(
            RAW_WORKER,
            [sys.executable, str(script), c.redis_url, str(arms.CONCURRENCY)],
            log,
            env=c.environ(),
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


def start_everything(c: cluster_mod.Cluster) -> platform_mod.Platform:
    """Platform.start(), but the gateway gets no create rate limit (10/s per caller by
    default, which would make the submit arm measure the limiter)."""
    p = platform_mod.Platform(c)
    p.apply_crds()
    p.start_operator()
    assert p.start_worker(concurrency=arms.CONCURRENCY).name == WORKER
    p.start_api(extra_env={"LONGTASK_CREATE_RATE_PER_SECOND": "0"})
    start_raw_worker(c)
    return p


# -- the arms ---------------------------------------------------------------------------
async def run(c: cluster_mod.Cluster, p: platform_mod.Platform, args: argparse.Namespace) -> list[str]:
    async with ltclient.Clients.open(str(c.kubeconfig), p.api_url, c.redis_url) as cl:
        log = ltclient.EventLog(cl.redis)
        follower = asyncio.create_task(log.run(), name="event-log")
        try:
            ctx = arms.Ctx(c, p, cl, log, recorder.Recorder.of(c, cl.own))
            results = await run_arms(ctx, args)
        finally:
            follower.cancel()
    return assemble(c, ctx.rec, results)


async def run_arms(ctx: arms.Ctx, args: argparse.Namespace) -> report.Results:
    r = report.Results(samples=args.samples)
    for namespace in namespaces(args):
        await asyncio.to_thread(ctx.c.kubectl, "create", "namespace", namespace)
    if args.samples:
        for path in ("direct", "gateway"):
            progress(f"latency, {path}")
            r.lat[path] = await arms.lt_latency(ctx, path, args.samples)
        progress("latency, raw Celery")
        async with ctx.rec.phase("lat raw"):
            r.lat["raw"] = await asyncio.to_thread(arms.raw_latency, ctx.c, args.samples)
        for path in ("direct", "gateway"):
            report.add_received(r.lat[path], ctx.c.child(WORKER).log_path)
        report.add_received(r.lat["raw"], ctx.c.child(RAW_WORKER).log_path)
    if args.submit:
        for path in ("direct", "gateway"):
            progress(f"submit at {arms.IN_FLIGHT} in flight, {path}")
            r.submits[path] = await arms.submit(ctx, path, args.submit)
    for tasks in dict.fromkeys((args.tasks, args.burst)):
        if tasks:
            progress(f"burst of {tasks}, longtask")
            lt = await arms.lt_burst(ctx, tasks)
            progress(f"burst of {tasks}, raw Celery")
            async with ctx.rec.phase(f"raw {tasks}"):
                raw = await asyncio.to_thread(arms.raw_burst, ctx.c, tasks)
            r.bursts.append((lt, raw))
    if args.scale:
        progress(f"scale: {args.scale} LongTasks, then an operator restart")
        r.scale = await arms_scale.run(ctx, args.scale, restart_tasks=args.restart)
    return r


def namespaces(args: argparse.Namespace) -> list[str]:
    found = []
    if args.samples:
        found += ["bench-lat-direct", "bench-lat-gateway"]
    if args.submit:
        found += ["bench-submit-direct", "bench-submit-gateway"]
    found += [f"bench-burst-{n}" for n in dict.fromkeys((args.tasks, args.burst)) if n]
    if args.scale:
        found.append(arms_scale.NAMESPACE)
    return found


def assemble(c: cluster_mod.Cluster, rec: recorder.Recorder, r: report.Results) -> list[str]:
    sections = [[f"longtask {code_version()}; {os.cpu_count()} CPUs; worker concurrency {arms.CONCURRENCY}"]]
    if r.lat:
        sections.append(report.latency(r))
    if r.submits:
        sections.append(report.submit(r))
    sections += [report.burst(lt, raw) for lt, raw in r.bursts]
    if rec.per_task():
        sections.append(report.requests(rec))
    if r.scale:
        sections.append(report.scale(r.scale, rec))
    sections.append(rec.cpu.report())
    sections.append(report.errors([c.state_dir / "logs" / "operator.log"]))
    sections.append(report.targets(r, rec))
    return [line for section in sections for line in [*section, ""]][:-1]


# -- main -------------------------------------------------------------------------------
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="tasks per latency arm")
    parser.add_argument("--submit", type=int, default=640, help="creates per path at 64 in flight")
    parser.add_argument("--tasks", type=int, default=200, help="the first burst")
    parser.add_argument("--burst", type=int, default=2000, help="the second burst")
    parser.add_argument("--scale", type=int, default=10000, help="LongTasks kept in the cluster")
    parser.add_argument("--restart", type=int, default=100, help="tasks created while the operator is down")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep kubeconfig and logs here (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    # The image compiles bytecode at build time (UV_COMPILE_BYTECODE); here, without cached
    # bytecode, every start of the operator would compile its imports (about 10 s on 2 cores).
    # Children may write it (into __pycache__, ignored by git): the first start writes, a
    # restart reads it, as in the image.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    progress("starting the cluster and the platform")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        p = start_everything(c)
        lines = asyncio.run(run(c, p, args))
        progress("stopping")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
