"""SSE fan-out: N concurrent watchers of running tasks through ONE gateway process.

It starts the embedded kube-apiserver + etcd and Redis, applies the CRDs and starts one
gateway process (auth off; no operator or worker: the bench itself plays the workers), creates
--tasks LongTasks, and then runs two arms one after the other, each with --watchers clients
spread evenly over the tasks:

1. gateway: each watcher is one SSE connection (raw asyncio HTTP/1.1 over loopback) to
   GET /v1/namespaces/{ns}/tasks/{name}/events, served by the gateway's shared reader
   (api/longtask_api/fanout.py: one XREAD for every watched stream, fanned out in memory).
2. baseline, direct XREAD: each watcher is its own Redis connection doing a blocking XREAD
   on the task's stream, which is what the gateway did per SSE client before the shared
   reader (one Redis connection per watcher), without the HTTP layer.

In each arm the bench publishes --events progress events per task, one every --interval
seconds per task, tasks staggered across the interval, then a terminal event, writing them
to the tasks' Redis streams exactly as a worker does (TaskEvent, `at` = time.time()).
Delivery latency is the client's receipt time minus the event's `at`, both time.time() on this
machine. The gateway's memory per watcher is (RSS with every watcher connected and
streaming - RSS before) / N, read from /proc. Errors: connections that failed, answered
non-200, or missed or repeated an event. All traffic stays on 127.0.0.1 and every arm is
bounded in count and time (--timeout). Run:

    uv run python bench/sse_fanout.py [--watchers 2000] [--tasks 20] [--events 20] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from longtask_contracts import events, names
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod

NAMESPACE = "default"
TARGET_P99_MS = 100.0
CONNECT_BATCH = 100  # connections opened at once


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


@dataclass
class Arm:
    """What one arm's watchers saw."""

    name: str
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: list[str] = field(default_factory=list)
    ready: int = 0
    rss_before: int = 0
    rss_during: int = 0
    redis_clients: int = 0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Barrier:
    """Counts watchers that saw the warm-up event; the publisher waits for all of them."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.event = total, 0, asyncio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count >= self.total:
            self.event.set()


def _event(uid: str, name: str, kind: events.Kind, **fields: object) -> dict[str, str]:
    return events.TaskEvent(kind=kind, namespace=NAMESPACE, name=name, uid=uid, attempt=1, **fields).encode()


async def publish(
    r: aioredis.Redis, tasks: list[tuple[str, str]], *, count: int, interval: float, after_warmup: Barrier
) -> None:
    """A `started` event per task, then (once every watcher saw it) `count` progress events per
    task every `interval` s, staggered across tasks, then `succeeded`."""
    for name, uid in tasks:
        await r.xadd(names.events_stream(uid), _event(uid, name, events.Kind.STARTED))
    await after_warmup.event.wait()
    began = time.monotonic()
    slots = [
        (i * interval + j * interval / len(tasks), j) for i in range(count + 1) for j in range(len(tasks))
    ]
    for offset, j in sorted(slots):
        delay = began + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        name, uid = tasks[j]
        i = int(offset // interval)
        if i < count:
            fields = _event(uid, name, events.Kind.PROGRESS, progress=100 * (i + 1) / count, step=f"{i + 1}")
        else:
            fields = _event(uid, name, events.Kind.SUCCEEDED, progress=100.0, result={"ok": True})
        await r.xadd(names.events_stream(uid), fields)


async def sse_watcher(port: int, name: str, arm: Arm, barrier: Barrier, expected: int) -> None:
    """One SSE client: count `started`, then record the latency of every later event."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        arm.errors.append(f"connect: {exc}")
        barrier.arrive()
        return
    request = (
        f"GET /v1/namespaces/{NAMESPACE}/tasks/{name}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    seen, warmed = 0, False
    try:
        status = await reader.readline()
        if b" 200 " not in status:
            arm.errors.append(f"status: {status!r}")
            barrier.arrive()
            return
        while True:
            line = await reader.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            now = time.time()
            data = json.loads(line[6:])
            if data["kind"] == "started":
                warmed = True
                barrier.arrive()
                continue
            arm.latencies.append(now - data["at"])
            seen += 1
            if data["kind"] == "succeeded":
                break
    except (OSError, ValueError) as exc:
        arm.errors.append(f"stream: {exc!r}")
    finally:
        writer.close()
        if not warmed:
            barrier.arrive()
    if seen != expected:
        arm.errors.append(f"{name}: {seen} events, expected {expected}")


async def xread_watcher(url: str, uid: str, arm: Arm, barrier: Barrier, expected: int) -> None:
    """One direct Redis client, as the old gateway held per SSE client: XREAD BLOCK from 0."""
    r = aioredis.Redis.from_url(url, single_connection_client=True)
    key, after, seen, warmed = names.events_stream(uid), "0", 0, False
    try:
        while True:
            reply = await r.xread({key: after}, count=500, block=5000)
            now = time.time()
            done = False
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    after = entry_id.decode()
                    event = events.TaskEvent.decode(fields)
                    if event.kind is events.Kind.STARTED:
                        warmed = True
                        barrier.arrive()
                        continue
                    arm.latencies.append(now - event.at)
                    seen += 1
                    done = done or event.terminal
            if done:
                break
    except Exception as exc:
        arm.errors.append(f"xread: {exc!r}")
    finally:
        await r.aclose()
        if not warmed:
            barrier.arrive()
    if seen != expected:
        arm.errors.append(f"{uid}: {seen} events, expected {expected}")


async def run_arm(
    arm: Arm,
    *,
    redis_url: str,
    tasks: list[tuple[str, str]],
    watchers: int,
    count: int,
    interval: float,
    limit_seconds: float,
    start: Callable[[int, Barrier], Awaitable[None]],
    gateway_pid: int | None,
) -> Arm:
    r = aioredis.Redis.from_url(redis_url)
    for _, uid in tasks:
        await r.delete(names.events_stream(uid))
    barrier = Barrier(watchers)
    if gateway_pid:
        arm.rss_before = rss_bytes(gateway_pid)
    clients: list[asyncio.Task[None]] = []  # a client that raises is an error, not a hang
    for first in range(0, watchers, CONNECT_BATCH):
        clients += [
            asyncio.create_task(start(i, barrier)) for i in range(first, min(watchers, first + CONNECT_BATCH))
        ]
        await asyncio.sleep(0)  # let this batch start connecting before the next
    publisher = asyncio.create_task(publish(r, tasks, count=count, interval=interval, after_warmup=barrier))
    try:
        await asyncio.wait_for(barrier.event.wait(), limit_seconds)
        arm.ready = barrier.count
        info = await r.info("clients")
        arm.redis_clients = int(info["connected_clients"]) - 1  # not the bench's own
        if gateway_pid:
            arm.rss_during = rss_bytes(gateway_pid)
        await asyncio.wait_for(asyncio.gather(publisher, *clients), limit_seconds)
        arm.errors += [f"client: {t.exception()!r}" for t in clients if t.exception() is not None]
    except TimeoutError:
        arm.errors.append(f"the arm did not finish within {limit_seconds} s")
        for task in [publisher, *clients]:
            task.cancel()
    await r.aclose()
    return arm


def line(arm: Arm) -> str:
    ms = [x * 1000 for x in arm.latencies]
    if not ms:
        return f"{arm.name:<34} {'no events':>30}   errors {len(arm.errors)}"
    return (
        f"{arm.name:<34} {statistics.median(ms):8.1f} {percentile(ms, 0.99):8.1f} {max(ms):8.1f} "
        f"{len(ms):8d} {len(arm.errors):7d} {arm.redis_clients:8d}"
    )


def report(args: argparse.Namespace, gateway: Arm, direct: Arm) -> list[str]:
    n = args.watchers
    per_watcher = (gateway.rss_during - gateway.rss_before) / max(1, n)
    out = [
        "",
        f"SSE fan-out: {n} watchers of {args.tasks} tasks ({n // args.tasks} per task), "
        f"{args.events} events per task every {args.interval} s, one gateway process",
        f"{'arm':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'events':>8} {'errors':>7} {'redis cx':>8}",
        line(gateway),
        line(direct),
    ]
    if gateway.latencies and direct.latencies:
        g99, d99 = percentile(gateway.latencies, 0.99), percentile(direct.latencies, 0.99)
        g50, d50 = statistics.median(gateway.latencies), statistics.median(direct.latencies)
        out.append(f"ratio gateway/direct: p50 {g50 / d50:.2f}x, p99 {g99 / d99:.2f}x")
    out += [
        f"gateway RSS: {gateway.rss_before / 2**20:.1f} MiB idle, {gateway.rss_during / 2**20:.1f} MiB with "
        f"{n} watchers: {per_watcher / 1024:.1f} KiB per watcher",
    ]
    for arm in (gateway, direct):
        for error in arm.errors[:5]:
            out.append(f"error ({arm.name}): {error}")
    if gateway.latencies:
        p99 = percentile(gateway.latencies, 0.99) * 1000
        verdict = "met" if p99 <= TARGET_P99_MS else f"missed by {p99 - TARGET_P99_MS:.1f} ms"
        out.append(f"Target: p99 <= {TARGET_P99_MS:.0f} ms at {n} watchers: {verdict} (p99 {p99:.1f} ms)")
    return out


def create_tasks(c: cluster_mod.Cluster, count: int) -> list[tuple[str, str]]:
    docs = [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": f"fanout-{i}"},
            "spec": {"task": "bench.fanout"},
        }
        for i in range(count)
    ]
    c.kubectl("apply", "-n", NAMESPACE, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    out = c.kubectl("get", "lt", "-n", NAMESPACE, "-o", "json").stdout
    uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in json.loads(out)["items"]}
    return [(f"fanout-{i}", uids[f"fanout-{i}"]) for i in range(count)]


async def measure(args: argparse.Namespace, c: cluster_mod.Cluster, port: int, pid: int) -> list[str]:
    tasks = create_tasks(c, args.tasks)
    expected = args.events + 1
    common = {
        "redis_url": c.redis_url,
        "tasks": tasks,
        "watchers": args.watchers,
        "count": args.events,
        "interval": args.interval,
        "limit_seconds": args.timeout,
    }

    gateway, direct = Arm("gateway (shared reader)"), Arm("direct XREAD (1 conn per watcher)")

    async def via_gateway(i: int, barrier: Barrier) -> None:
        await sse_watcher(port, tasks[i % len(tasks)][0], gateway, barrier, expected)

    async def via_redis(i: int, barrier: Barrier) -> None:
        await xread_watcher(c.redis_url, tasks[i % len(tasks)][1], direct, barrier, expected)

    progress(f"gateway arm: {args.watchers} SSE watchers")
    await run_arm(gateway, start=via_gateway, gateway_pid=pid, **common)
    progress(f"baseline arm: {args.watchers} direct XREAD watchers")
    await run_arm(direct, start=via_redis, gateway_pid=None, **common)
    return report(args, gateway, direct)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=2000, help="concurrent watchers (at most 2000)")
    parser.add_argument("--tasks", type=int, default=20, help="running tasks they watch")
    parser.add_argument("--events", type=int, default=20, help="progress events per task")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a task's events")
    parser.add_argument("--timeout", type=float, default=300, help="give up on an arm after this long")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep kubeconfig and logs here")
    args = parser.parse_args(argv)
    if not 1 <= args.watchers <= 2000 or not 1 <= args.tasks <= args.watchers:
        parser.error("--watchers must be 1..2000 and --tasks 1..watchers")
    progress("starting the cluster and one gateway process")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        p = platform_mod.Platform(c)
        p.apply_crds()
        # Every watcher is one caller (auth off: one client IP): lift the open-stream limit.
        child = p.start_api(extra_env={"LONGTASK_SSE_PING_SECONDS": "15", "LONGTASK_STREAMS_PER_CALLER": "0"})
        lines = asyncio.run(measure(args, c, p.api_port, child.pid))
        progress("stopping")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
