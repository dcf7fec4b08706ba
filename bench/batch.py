"""Batches: one LongTask with many items, against raw Celery (issue 19's targets).

It starts the platform as bench/dispatch.py does (embedded kube-apiserver + etcd, Redis,
the operator, one worker process with concurrency 2 on pool default, the gateway without
its create rate limit, and a raw Celery worker with the same concurrency), then runs these
arms one after another (0 skips an arm):

a. Throughput (--items): that many demo.noop items in one LongTask: items/s from the create
   call to the batch's terminal event, against raw Celery sending as many tasks in a loop to
   its worker (first send -> last task finished); the ratio.
b. Apiserver requests of that batch (bench/recorder.py): its create, and its writes besides
   the create (status patches) per second from the create to its CR seen Succeeded.
c. Fairness (--fairness, --singles): a batch of that many demo.noop items on pool default;
   once its first lane ran, single demo.noop LongTasks created directly on the same pool,
   each once the previous one started: create called -> `started` event, p50/p99.
d. A big batch (--big) through the gateway: the operator's RSS before and once settled,
   Redis used_memory before and after (bytes per item, and MEMORY USAGE of the batch's
   keys), and the gateway's GET of the task and `kubectl get lt` timed while it runs.
e. Cancel (--cancel): a batch of that many demo.sleep items (0.01 s each) cancelled
   (spec.cancel) once a tenth succeeded; once its CR says Cancelled, and 5 s later, every
   item record is read: the items whose first start is after the batch's `cancelled`
   event (and after the CR was seen Cancelled) must be 0.

Batches are POSTed to the gateway with `items` (--create gateway), or, with --create upload,
the bench does what the gateway does for a large batch: it writes the items to Redis
(names.upload) and creates the LongTask directly with spec.itemsFrom. --parallelism sets
spec.parallelism (default: the spec's default). It prints a table and a targets section,
and asserts nothing. Run:

    uv run python bench/batch.py [--items 10000] [--fairness 10000] [--singles 20]
                                 [--big 100000] [--cancel 5000] [--parallelism N]
                                 [--create gateway|upload] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import arms
import arms_batch
import dispatch
import ltclient
import recorder
import report

from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod

# The targets of issue 19 (docs/benchmarks.md), printed beside the figures.
TARGET_RATIO = 0.8  # items/s of a batch against raw Celery's tasks/s
TARGET_WRITES_PER_SECOND = 1.0  # a batch's writes besides its create
TARGET_SINGLE_P99 = 1.0  # seconds, create called -> started, of a single task during a batch
TARGET_RSS_GROWTH_MB = 50.0  # the operator's, for the big batch
TARGET_STARTED_AFTER_CANCEL = 0


@dataclass
class Results:
    throughput: arms_batch.Throughput | None = None
    requests: arms_batch.Requests | None = None  # of the throughput batch
    big_requests: arms_batch.Requests | None = None
    fairness: arms_batch.Fairness | None = None
    big: arms_batch.Big | None = None
    cancel: arms_batch.Cancel | None = None


async def run(c: cluster_mod.Cluster, p: platform_mod.Platform, args: argparse.Namespace) -> list[str]:
    async with ltclient.Clients.open(str(c.kubeconfig), p.api_url, c.redis_url) as cl:
        log = ltclient.EventLog(cl.redis)
        follower = asyncio.create_task(log.run(), name="event-log")
        try:
            ctx = arms.Ctx(c, p, cl, log, recorder.Recorder.of(c, cl.own))
            r = await run_arms(ctx, args)
        finally:
            follower.cancel()
    return assemble(c, ctx.rec, r, args)


async def run_arms(ctx: arms.Ctx, args: argparse.Namespace) -> Results:
    r = Results()
    how, par = args.create, args.parallelism
    for namespace, size in (
        ("bench-batch-throughput", args.items),
        ("bench-batch-fairness", args.fairness),
        ("bench-batch-big", args.big),
        ("bench-batch-cancel", args.cancel),
    ):
        if size:
            await asyncio.to_thread(ctx.c.kubectl, "create", "namespace", namespace)
    if args.items:
        dispatch.progress(f"throughput: {args.items} items in one LongTask, then raw Celery")
        r.throughput = await arms_batch.throughput(ctx, args.items, how, par)
        r.requests = arms_batch.requests(ctx, "batch", r.throughput.settled)
    if args.fairness and args.singles:
        dispatch.progress(f"fairness: {args.singles} single tasks during a batch of {args.fairness}")
        r.fairness = await arms_batch.fairness(ctx, args.fairness, args.singles, how, par)
    if args.big:
        dispatch.progress(f"big: {args.big} items")
        async with ctx.rec.phase("batch big"):
            r.big = await arms_batch.big(ctx, args.big, how, par)
        r.big_requests = arms_batch.requests(ctx, "batch big", r.big.settled)
    if args.cancel:
        dispatch.progress(f"cancel: a batch of {args.cancel} items")
        async with ctx.rec.phase("batch cancel"):
            r.cancel = await arms_batch.cancel(ctx, args.cancel, how, par)
    return r


# -- the report ------------------------------------------------------------------------------
def assemble(
    c: cluster_mod.Cluster, rec: recorder.Recorder, r: Results, args: argparse.Namespace
) -> list[str]:
    sections = [
        [
            f"longtask {dispatch.code_version()}; {os.cpu_count()} CPUs; worker concurrency"
            f" {arms.CONCURRENCY}; batches created by {args.create}; parallelism"
            f" {args.parallelism or 'default'}"
        ]
    ]
    if r.throughput:
        sections.append(throughput(r.throughput))
    if r.requests and r.throughput:
        sections.append(requests(f"the throughput batch ({r.throughput.items} items)", r.requests))
    if r.fairness:
        sections.append(fairness(r.fairness))
    if r.big:
        sections.append(big(r.big))
    if r.big_requests and r.big:
        sections.append(requests(f"the big batch ({r.big.items} items)", r.big_requests))
    if r.cancel:
        sections.append(cancel(r.cancel))
    sections.append(rec.cpu.report())
    sections.append(report.errors([c.state_dir / "logs" / "operator.log"]))
    sections.append(targets(r))
    return [line for section in sections for line in [*section, ""]][:-1]


def throughput(t: arms_batch.Throughput) -> list[str]:
    def row(label: str, seconds: float) -> str:
        return f"  {label:<52}{seconds:>9.2f}{t.items / seconds:>10.1f}"

    lines = [
        f"Throughput: {t.items} demo.noop items in one LongTask{'':<20}{'s':>9}{'items/s':>10}",
        row("longtask: create call returned", t.created),
        row("longtask: the batch's `started` event (first lane ran)", t.started),
        row("longtask: its terminal `succeeded` event", t.finished),
        row("longtask: its CR seen Succeeded (watch)", t.settled),
    ]
    if t.raw:
        lines += [
            row("raw Celery: all sent", t.raw.submitted),
            row("raw Celery: last task finished", t.raw.finished),
            f"  ratio longtask/raw in items/s to the terminal event: {t.ratio:.2f}x",
        ]
    if t.succeeded != t.items:
        lines.append(f"  warning: status.items.succeeded is {t.succeeded}, not {t.items}")
    return lines


def requests(which: str, q: arms_batch.Requests) -> list[str]:
    lines = [
        f"Apiserver requests of {which}: LongTasks and Events, the bench's own reads subtracted"
        " (`kubectl get lt` not: reads)",
        *(f"  {kind:<52}{count:>9}" for kind, count in sorted(q.counts.items())),
        f"  creates: {q.creates}; other writes on the LongTask: {q.status_writes} in {q.seconds:.1f} s"
        f" (create -> CR settled) = {q.per_second:.2f}/s; at most one a second allows"
        f" {q.allowed_writes(TARGET_WRITES_PER_SECOND)} (one per started second, and the last)",
        f"  Kubernetes Event writes: {q.writes('events')}",
    ]
    return lines


def fairness(f: arms_batch.Fairness) -> list[str]:
    lat = [v * 1000 for v in f.latencies]
    return [
        f"Fairness: {len(lat)} single demo.noop tasks created one after another during a batch of"
        f" {f.items} items (same pool)",
        f"  (ms){'':<44}{'p50':>9}{'p99':>9}{'mean':>9}{'max':>9}",
        report.ms_row("create called -> `started`", f.latencies, width=48),
        f"  {f.during} of {len(lat)} started before the batch ended "
        f"({f.batch_seconds:.1f} s from its create)",
    ]


def big(b: arms_batch.Big) -> list[str]:
    mb = 1e6
    keys = ", ".join(f"{label} {v / b.items:.1f}" for label, v in b.key_bytes.items())
    return [
        f"Big batch: {b.items} demo.noop items through the gateway",
        f"  create call (request -> response): {b.submit:.2f} s; create -> terminal event: {b.seconds:.1f} s"
        f" ({b.items / b.seconds:.0f} items/s)",
        f"  operator RSS (MiB): before {b.rss_before:.0f}, after {b.rss_after:.0f} (peak {b.peak_after:.0f});"
        f" growth {b.rss_growth_mb:.1f} MB",
        f"  Redis used_memory: before {b.redis_before / mb:.1f} MB, after {b.redis_after / mb:.1f} MB:"
        f" {b.bytes_per_item:.0f} bytes per item",
        f"  MEMORY USAGE per item (bytes): {keys}",
        f"  while it ran (ms){'':<31}{'p50':>9}{'p99':>9}{'mean':>9}{'max':>9}",
        report.ms_row(f"gateway GET of the task ({len(b.gets)})", b.gets, width=48),
        report.ms_row(f"kubectl get lt ({len(b.kubectl_gets)}, a process each)", b.kubectl_gets, width=48),
    ]


def cancel(c: arms_batch.Cancel) -> list[str]:
    items = c.counts
    return [
        f"Cancel: a batch of {c.items} demo.sleep items (0.01 s each), spec.cancel set once"
        f" {c.cancelled_at_succeeded} succeeded",
        f"  spec.cancel patched -> CR seen Cancelled: {c.cancel_to_cr:.2f} s",
        f"  status.items then: succeeded {items.get('succeeded')}, failed {items.get('failed')},"
        f" cancelled {items.get('cancelled')}, queued {items.get('queued')}, running {items.get('running')}",
        f"  items first started after the `cancelled` event: {c.started_after_event};"
        f" after the CR was seen Cancelled: {c.started_after_cr}",
        f"  item records written in the {arms_batch.DRAIN_SECONDS:.0f} s after the CR said Cancelled:"
        f" {c.records_after_cr}",
    ]


def targets(r: Results) -> list[str]:
    checks: list[tuple[str, str, bool]] = []
    if (t := r.throughput) and t.raw:
        checks.append(
            (f"throughput >= 0.8x raw ({t.items} items)", f"{t.ratio:.2f}x", t.ratio >= TARGET_RATIO)
        )
    for label, q in (("throughput", r.requests), ("big", r.big_requests)):
        if q is None:
            continue
        checks.append((f"creates of the {label} batch == 1", str(q.creates), q.creates == 1))
        allowed = q.allowed_writes(TARGET_WRITES_PER_SECOND)
        checks.append(
            (
                f"other writes <= 1/s ({label}: {q.status_writes} in {q.seconds:.1f} s)",
                f"{q.per_second:.2f}/s",
                q.status_writes <= allowed,
            )
        )
    if f := r.fairness:
        p99 = report.percentile(f.latencies, 99)
        checks.append(
            (f"single task during a batch p99 <= 1 s ({len(f.latencies)})", f"{p99:.3f} s", p99 <= 1.0)
        )
    if b := r.big:
        growth = b.rss_growth_mb
        checks.append(
            (
                f"operator RSS growth <= 50 MB ({b.items} items)",
                f"{growth:.1f} MB",
                growth <= TARGET_RSS_GROWTH_MB,
            )
        )
        checks.append(("Redis bytes per item (reported)", f"{b.bytes_per_item:.0f} B", True))
    if c := r.cancel:
        late = max(c.started_after_event, c.started_after_cr)
        checks.append(("items started after Cancelled == 0", str(late), late == TARGET_STARTED_AFTER_CANCEL))
    return ["Targets"] + [f"  {name:<50}{got:>12}   {'met' if ok else 'MISSED'}" for name, got, ok in checks]


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10000, help="items of the throughput batch")
    parser.add_argument(
        "--fairness", type=int, default=10000, help="items of the batch the singles run beside"
    )
    parser.add_argument("--singles", type=int, default=20, help="single tasks created during that batch")
    parser.add_argument("--big", type=int, default=100000, help="items of the big batch")
    parser.add_argument("--cancel", type=int, default=5000, help="items of the batch that is cancelled")
    parser.add_argument("--parallelism", type=int, default=None, help="spec.parallelism of every batch")
    parser.add_argument(
        "--create",
        choices=("gateway", "upload"),
        default="gateway",
        help="POST with items to the gateway, or write the upload and create with itemsFrom",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep kubeconfig and logs here (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as bench/dispatch.py: children may write bytecode
    dispatch.progress("starting the cluster and the platform")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        p = dispatch.start_everything(c)
        lines = asyncio.run(run(c, p, args))
        dispatch.progress("stopping")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
