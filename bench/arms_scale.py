"""The scale arm of bench/dispatch.py: the platform with N LongTasks kept in the cluster.

It fills a namespace with N LongTasks: most finished (demo.noop), `unfinished` Queued on a
pool no worker consumes, and `running` Running (demo.sleep for an hour on a pool with a
worker of its own). Settled, it reads the operator's memory and times LISTs of every
LongTask. Then it kills the operator (SIGKILL, as a crash or an evicted pod), creates
`restart` LongTasks while it is down, starts it again and measures from that start:

- up: the operator's metrics endpoint answers (its startup handler ran);
- seen: its longtask_tasks gauge counts every LongTask in the cluster (the operator listed them all);
- queued: every task created while it was down has its `queued` event;
- caught up: the later of seen and queued;
- a probe task, created as soon as the operator is up: create called -> `started`.

The operator's memory is read again once it has caught up and settled.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import arms
import cputime
import ltclient
import probes

Kind = ltclient.Kind
IDLE_POOL = "bench-idle"  # no worker consumes it: its tasks stay Queued
BUSY_POOL = "bench-busy"  # one worker of its own runs these for an hour
SLEEP: ltclient.Spec = {"task": "demo.sleep", "pool": BUSY_POOL, "params": {"seconds": 3600, "steps": 1}}
IDLE: ltclient.Spec = {"task": "demo.noop", "pool": IDLE_POOL}
NAMESPACE = "bench-scale"
RESTART_LABEL = "bench.longtask.io/restart"
MEMORY_OF = ("operator", "kube-apiserver", "etcd", "redis")


@dataclass
class Scale:
    tasks: int
    unfinished: int
    running: int
    fill_created: float = math.nan  # seconds to create them all
    fill_settled: float = math.nan  # seconds until every status said what its events said
    memory: dict[str, tuple[float, float]] = field(default_factory=dict)  # process -> RSS, peak (MiB)
    lists: list[ltclient.ListCost] = field(default_factory=list)
    restart: int = 0  # tasks created while the operator was down
    queued_while_down: int = 0
    up: float = math.nan  # seconds from the operator's start, each
    seen: float = math.nan
    queued: float = math.nan
    probe_created: float = math.nan
    probe_latency: float = math.nan  # probe's create called -> `started`
    probe_queued: float = math.nan  # probe's create called -> `queued` (the operator's part)
    memory_after: tuple[float, float] = (math.nan, math.nan)  # the restarted operator, caught up
    total: int = 0  # LongTasks in the cluster after the restart

    @property
    def caught_up(self) -> float:
        """The later of seen and queued (queued alone if the operator has no longtask_tasks gauge)."""
        known = [v for v in (self.seen, self.queued) if not math.isnan(v)]
        return max(known) if known else math.nan


def fill_specs(tasks: int, unfinished: int, running: int) -> list[tuple[str, ltclient.Spec, str]]:
    """(name, spec, phase it settles in) of every task; unfinished ones spread evenly."""
    every = max(1, tasks // max(1, unfinished + running))
    specs = []
    odd = 0
    for i in range(tasks):
        if i % every == 0 and odd < running + unfinished:
            spec, phase = (SLEEP, "Running") if odd < running else (IDLE, "Queued")
            odd += 1
        else:
            spec, phase = arms.NOOP, "Succeeded"
        specs.append((f"fill-{i:05d}", spec, phase))
    return specs


async def fill(ctx: arms.Ctx, s: Scale) -> None:
    if s.running:
        await asyncio.to_thread(ctx.p.start_worker, pool=BUSY_POOL, concurrency=s.running)
    specs = fill_specs(s.tasks, s.unfinished, s.running)
    async with ctx.rec.phase("scale fill", tasks=s.tasks):
        began = time.time()
        made = await ctx.cl.create_many(
            ctx.cl.creator("direct", NAMESPACE), [(name, spec) for name, spec, _ in specs], arms.IN_FLIGHT
        )
        s.fill_created = time.time() - began
        expected = {"Succeeded": Kind.SUCCEEDED, "Queued": Kind.QUEUED, "Running": Kind.STARTED}
        for phase, kind in expected.items():
            uids = [m.uid for m, (_, _, p) in zip(made, specs, strict=True) if p == phase]
            await ctx.log.wait(uids, kind, within=arms.wait_seconds(s.tasks))
        await ctx.settle(NAMESPACE, {name: phase for name, _, phase in specs})
        s.fill_settled = time.time() - began


async def list_costs(ctx: arms.Ctx, s: Scale) -> None:
    """One LIST of every LongTask in one page, then in pages of 500; CPU of the apiserver and etcd."""
    pids = {name: ctx.c.child(name).pid for name in ("kube-apiserver", "etcd")}
    for limit in (None, 500):
        before = cputime.snapshot(pids)
        cost = await ctx.cl.list_cost(limit=limit)
        after = cputime.snapshot(pids)
        cost.cpu = {name: after[name] - before[name] for name in pids}
        s.lists.append(cost)


def memory(ctx: arms.Ctx) -> dict[str, tuple[float, float]]:
    return {name: probes.memory(ctx.c.child(name).pid) for name in MEMORY_OF}


async def operator_seen(ctx: arms.Ctx, total: int, since: float, within: float) -> float:
    """Seconds from `since` until the operator's longtask_tasks gauge sums to `total`
    (read every 0.1 s); NaN if it has no such gauge or never gets there."""
    url = ctx.p.operator_metrics_url
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with ctx.cl.http.get(url) as reply:
            seen = probes.tasks_seen(await reply.text())
        if seen is None:
            return math.nan
        if seen >= total:
            return time.time() - since
        await asyncio.sleep(0.1)
    return math.nan


async def restart(ctx: arms.Ctx, s: Scale) -> None:
    create = ctx.cl.creator("direct", NAMESPACE, labels={RESTART_LABEL: "true"})
    specs = [(f"restart-{i:05d}", arms.NOOP) for i in range(s.restart)]
    within = arms.wait_seconds(s.tasks)
    async with ctx.rec.phase("restart"):
        await asyncio.to_thread(ctx.p.kill_operator)
        down = await ctx.cl.create_many(create, specs, arms.IN_FLIGHT)
        s.queued_while_down = sum(not math.isnan(ctx.log.first(m.uid, Kind.QUEUED)) for m in down)
        began = time.time()
        await asyncio.to_thread(ctx.p.start_operator)
        s.up = time.time() - began
        probe = await create("restart-probe", arms.NOOP)
        s.probe_created = probe.called - began
        seen = asyncio.create_task(operator_seen(ctx, s.total, began, within))
        await ctx.log.wait([m.uid for m in down], Kind.QUEUED, within=within)
        await ctx.log.wait([probe.uid], Kind.STARTED, within=within)
        s.queued = ctx.log.last([m.uid for m in down], Kind.QUEUED) - began
        s.probe_latency = ctx.log.first(probe.uid, Kind.STARTED) - probe.called
        s.probe_queued = ctx.log.first(probe.uid, Kind.QUEUED) - probe.called
        s.seen = await seen
        everyone = [*down, probe]
        await ctx.log.wait([m.uid for m in everyone], Kind.SUCCEEDED, within=within)
        await ctx.settle(
            NAMESPACE, {m.name: "Succeeded" for m in everyone}, label_selector=f"{RESTART_LABEL}=true"
        )
    s.memory_after = probes.memory(ctx.c.child("operator").pid)


async def run(ctx: arms.Ctx, tasks: int, restart_tasks: int = 100, running: int = 2) -> Scale:
    s = Scale(
        tasks, unfinished=min(200, tasks // 10), running=min(running, tasks // 10), restart=restart_tasks
    )
    await fill(ctx, s)
    s.memory = memory(ctx)
    await list_costs(ctx, s)
    s.total = s.lists[0].items + s.restart + 1
    await restart(ctx, s)
    return s
