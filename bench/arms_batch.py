"""The arms of bench/batch.py: one LongTask with many items (a batch), against raw Celery.

Each arm runs in a namespace of its own and ends with its batch ended and its CR settled
(the operator has read every status-stream entry), so no arm's work spills into the next.
A batch is created either through the gateway (POST with `items`: the gateway puts them in
the object or stores them in Redis and names them in spec.itemsFrom) or, with
`--create upload`, by the bench itself doing what the gateway does (the items in
names.upload(id), then a direct create with spec.itemsFrom).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import arms
import ltclient
import probes
import redis

from longtask_contracts import batch, names
from longtask_runtime import kube as runtimekube

Kind = ltclient.Kind
UPLOAD_TTL_SECONDS = 86400  # as the gateway's uploads: one whose create failed goes away
UPLOAD_PIPELINE = 5000  # items per HSET when the bench writes an upload itself


def noop_items(count: int) -> list[dict[str, Any]]:
    """demo.noop takes no params: each item is an empty object."""
    return [{} for _ in range(count)]


# -- creating a batch ------------------------------------------------------------------------
async def create_batch(
    ctx: arms.Ctx, how: str, namespace: str, name: str, spec: ltclient.Spec, items: list[dict[str, Any]]
) -> ltclient.Created:
    """Create a batch by `how`: "gateway" (POST with `items`) or "upload" (see the docstring)."""
    if how == "gateway":
        body = {"name": name, "spec": spec, "items": items}
        called = time.time()
        url = f"{ctx.cl.gateway}/v1/namespaces/{namespace}/tasks"
        async with ctx.cl.http.post(url, json=body) as reply:
            answer = await reply.read()
        if reply.status != 202:
            raise RuntimeError(f"gateway answered {reply.status}: {answer[:300]!r}")
        return ltclient.Created(name, json.loads(answer)["uid"], called, time.time())
    called = time.time()
    upload = secrets.token_hex(16)
    key = names.upload(upload)
    for start in range(0, len(items), UPLOAD_PIPELINE):
        piece = items[start : start + UPLOAD_PIPELINE]
        mapping = {str(start + i): json.dumps(item, separators=(",", ":")) for i, item in enumerate(piece)}
        await ctx.cl.redis.hset(key, mapping=mapping)
    await ctx.cl.redis.expire(key, UPLOAD_TTL_SECONDS)
    made = await ctx.cl.creator("direct", namespace)(
        name, {**spec, "itemsFrom": {"upload": upload, "count": len(items)}}
    )
    return ltclient.Created(name, made.uid, called, made.returned)


async def status_of(ctx: arms.Ctx, namespace: str, name: str) -> dict[str, Any]:
    obj = await ctx.cl.custom.get_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, name
    )
    ctx.cl.own["GET longtasks"] += 1
    return dict(obj.get("status") or {})


async def records(ctx: arms.Ctx, uid: str) -> list[batch.ItemRecord]:
    raw: dict[bytes, bytes] = await ctx.cl.redis.hgetall(names.items_records(uid))
    return [batch.ItemRecord.model_validate_json(v) for v in raw.values()]


async def counts(ctx: arms.Ctx, uid: str) -> batch.Counts:
    raw = await ctx.cl.redis.hgetall(names.batch(uid))
    return batch.counts(raw, await ctx.cl.redis.zcard(names.items_retry(uid)))


def batch_spec(task: str, parallelism: int | None, params: dict[str, Any] | None = None) -> ltclient.Spec:
    spec: ltclient.Spec = {"task": task}
    if params:
        spec["params"] = params
    if parallelism:
        spec["parallelism"] = parallelism
    return spec


# -- a. throughput and b. apiserver requests ------------------------------------------------
@dataclass
class Throughput:
    items: int
    parallelism: int
    created: float  # seconds from the create call to its response
    started: float  # ... to the batch's `started` event (its first lane ran)
    finished: float  # ... to its terminal (`succeeded`) event
    settled: float  # ... to its CR seen Succeeded on a watch
    succeeded: int  # status.items.succeeded once settled
    raw: arms.Burst | None = None

    @property
    def ratio(self) -> float:
        return math.nan if self.raw is None else self.raw.finished / self.finished


async def throughput(ctx: arms.Ctx, items: int, how: str, parallelism: int | None) -> Throughput:
    """`items` demo.noop items in one LongTask (recorder phase "batch"), then as many raw Celery
    tasks sent in a loop to the raw worker of the same concurrency (phase "batch raw")."""
    namespace = "bench-batch-throughput"
    spec = batch_spec("demo.noop", parallelism)
    payload = noop_items(items)
    async with ctx.rec.phase("batch", tasks=1):
        made = await create_batch(ctx, how, namespace, "throughput", spec, payload)
        await ctx.log.wait([made.uid], Kind.SUCCEEDED, within=arms.wait_seconds(items))
        settled = await ctx.settle(namespace, {made.name: "Succeeded"})
    status = await status_of(ctx, namespace, made.name)
    t = Throughput(
        items,
        int(spec.get("parallelism") or 0),
        made.returned - made.called,
        ctx.log.first(made.uid, Kind.STARTED) - made.called,
        ctx.log.first(made.uid, Kind.SUCCEEDED) - made.called,
        settled - made.called,
        int((status.get("items") or {}).get("succeeded", -1)),
    )
    async with ctx.rec.phase("batch raw"):
        t.raw = await asyncio.to_thread(arms.raw_burst, ctx.c, items)
    return t


WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Requests:
    """The apiserver requests of phase "batch" on LongTasks and Events, by kind."""

    counts: probes.Counts
    seconds: float  # create called -> CR seen settled

    def writes(self, resource: str) -> int:
        """Write requests on `resource` ("longtasks" counts its subresources too)."""
        return sum(
            v
            for k, v in self.counts.items()
            if k.split(" ", 1)[0] in WRITES and k.split(" ", 1)[1].split("/", 1)[0] == resource
        )

    @property
    def creates(self) -> int:
        return self.counts.get("POST longtasks", 0)

    @property
    def status_writes(self) -> int:
        """Writes on the LongTask besides its create: status and metadata patches."""
        return self.writes("longtasks") - self.creates

    @property
    def per_second(self) -> float:
        return self.status_writes / self.seconds

    def allowed_writes(self, per_second: float) -> int:
        """What `per_second` writes allow in `seconds`: one per started interval, plus the
        write of the end (a batch shorter than a second may have its first and its last)."""
        return math.ceil(self.seconds * per_second) + 1


def requests(ctx: arms.Ctx, phase: str, seconds: float) -> Requests:
    """The requests of recorder phase `phase` (one batch), over `seconds` (create -> settled)."""
    counts = probes.Counts(
        {k: v for k, v in ctx.rec.requests(phase).items() if probes.is_task_request(k) and v}
    )
    return Requests(counts, seconds)


# -- c. fairness ---------------------------------------------------------------------------------
@dataclass
class Fairness:
    items: int
    latencies: list[float]  # create called -> `started`, seconds, per single task
    during: int  # single tasks that started before the batch ended
    batch_seconds: float  # the batch's create -> terminal event


async def fairness(ctx: arms.Ctx, items: int, singles: int, how: str, parallelism: int | None) -> Fairness:
    """A batch of `items` demo.noop items on pool default; once its first lane ran, `singles`
    demo.noop LongTasks created directly on the same pool, each once the previous one started."""
    namespace = "bench-batch-fairness"
    async with ctx.rec.phase("batch fair"):
        made = await create_batch(
            ctx, how, namespace, "batch", batch_spec("demo.noop", parallelism), noop_items(items)
        )
        await ctx.log.wait([made.uid], Kind.STARTED, within=arms.wait_seconds(items))
        create = ctx.cl.creator("direct", namespace)
        probes_made = []
        for i in range(singles):
            probes_made.append(await create(f"single-{i:03d}", arms.NOOP))
            await ctx.log.wait([probes_made[-1].uid], Kind.STARTED, within=arms.wait_seconds(1))
        await ctx.log.wait(
            [made.uid, *(p.uid for p in probes_made)], Kind.SUCCEEDED, within=arms.wait_seconds(items)
        )
        await ctx.settle(namespace, {m.name: "Succeeded" for m in [made, *probes_made]})
    ended = ctx.log.first(made.uid, Kind.SUCCEEDED)
    started = [ctx.log.first(p.uid, Kind.STARTED) for p in probes_made]
    return Fairness(
        items,
        [s - p.called for s, p in zip(started, probes_made, strict=True)],
        sum(s < ended for s in started),
        ended - made.called,
    )


# -- d. a big batch through the gateway ------------------------------------------------------------
@dataclass
class Big:
    items: int
    seconds: float = math.nan  # create called -> terminal event
    settled: float = math.nan  # create called -> CR seen Succeeded
    submit: float = math.nan  # create call -> response
    rss_before: float = math.nan  # operator VmRSS, MiB
    rss_after: float = math.nan
    peak_after: float = math.nan  # operator VmHWM once settled, MiB
    redis_before: int = 0  # INFO memory used_memory, bytes
    redis_after: int = 0
    key_bytes: dict[str, int] = field(default_factory=dict)  # MEMORY USAGE of the batch's keys
    gets: list[float] = field(default_factory=list)  # gateway GET of the task, seconds each
    kubectl_gets: list[float] = field(default_factory=list)  # `kubectl get lt -n NS`, seconds each

    @property
    def rss_growth_mb(self) -> float:
        return (self.rss_after - self.rss_before) * 2**20 / 1e6

    @property
    def bytes_per_item(self) -> float:
        return (self.redis_after - self.redis_before) / self.items


def used_memory(r: redis.Redis) -> int:
    info: dict[str, Any] = r.info("memory")
    return int(info["used_memory"])


async def big(ctx: arms.Ctx, items: int, how: str, parallelism: int | None) -> Big:
    """`items` demo.noop items through the gateway; operator RSS and Redis memory before and
    after, and the gateway's GET of the task and `kubectl get lt` timed while it runs."""
    namespace = "bench-batch-big"
    b = Big(items)
    operator = ctx.c.child("operator").pid
    r = redis.Redis.from_url(ctx.c.redis_url)
    try:
        b.rss_before = probes.memory(operator)[0]
        b.redis_before = await asyncio.to_thread(used_memory, r)
        payload = noop_items(items)
        made = await create_batch(ctx, how, namespace, "big", batch_spec("demo.noop", parallelism), payload)
        del payload
        b.submit = made.returned - made.called
        ended = asyncio.create_task(ctx.log.wait([made.uid], Kind.SUCCEEDED, within=arms.wait_seconds(items)))
        url = f"{ctx.cl.gateway}/v1/namespaces/{namespace}/tasks/{made.name}"
        while not ended.done():
            began = time.monotonic()
            async with ctx.cl.http.get(url) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"GET {url} answered {reply.status}")
            b.gets.append(time.monotonic() - began)
            began = time.monotonic()
            await asyncio.to_thread(kubectl_get, ctx, namespace)
            b.kubectl_gets.append(time.monotonic() - began)
            await asyncio.wait([ended], timeout=0.5)
        await ended
        b.seconds = ctx.log.first(made.uid, Kind.SUCCEEDED) - made.called
        b.redis_after = await asyncio.to_thread(used_memory, r)
        for label, key in (
            ("inputs", names.items_inputs(made.uid)),
            ("records", names.items_records(made.uid)),
            ("events", names.events_stream(made.uid)),
        ):
            b.key_bytes[label] = int(await asyncio.to_thread(r.memory_usage, key, samples=0) or 0)
        b.settled = await ctx.settle(namespace, {made.name: "Succeeded"}) - made.called
        b.rss_after, b.peak_after = probes.memory(operator)
    finally:
        r.close()
    return b


def kubectl_get(ctx: arms.Ctx, namespace: str) -> None:
    out = ctx.c.kubectl("get", "lt", "-n", namespace, check=False)
    if out.returncode != 0:
        raise subprocess.CalledProcessError(out.returncode, "kubectl get lt", out.stdout, out.stderr)


# -- e. cancel ---------------------------------------------------------------------------------------
CANCEL_AFTER = 0.1  # the share of items succeeded before the bench cancels
CANCEL_ITEM = {"seconds": 0.01, "steps": 1}  # demo.sleep per item: the batch runs for a while
DRAIN_SECONDS = 5.0  # after the CR said Cancelled, how long the bench goes on watching for starts


@dataclass
class Cancel:
    items: int
    cancelled_at_succeeded: int = 0  # succeeded items when the bench set spec.cancel
    cancel_to_cr: float = math.nan  # spec.cancel patched -> CR seen Cancelled, seconds
    counts: dict[str, Any] = field(default_factory=dict)  # status.items once Cancelled
    started_after_event: int = -1  # items whose first start is after the `cancelled` event
    started_after_cr: int = -1  # ... after the CR was seen Cancelled
    records_after_cr: int = -1  # item records written after the CR was seen Cancelled, DRAIN_SECONDS on


async def cancel(ctx: arms.Ctx, items: int, how: str, parallelism: int | None) -> Cancel:
    """A batch of `items` demo.sleep items (0.01 s each), cancelled once a tenth succeeded;
    then every item record is read: how many items first started after it said Cancelled."""
    namespace = "bench-batch-cancel"
    c = Cancel(items)
    spec = batch_spec("demo.sleep", parallelism, CANCEL_ITEM)
    made = await create_batch(ctx, how, namespace, "cancel", spec, noop_items(items))
    deadline = time.monotonic() + arms.wait_seconds(items)
    while (now := await counts(ctx, made.uid)).succeeded < max(1, int(items * CANCEL_AFTER)):
        if now.ended >= now.total > 0 or time.monotonic() > deadline:
            raise RuntimeError(f"the batch to cancel ended (or stalled) first: {now}")
        await asyncio.sleep(0.05)
    c.cancelled_at_succeeded = now.succeeded
    patched = time.time()
    await ctx.cl.custom.patch_namespaced_custom_object(
        names.GROUP,
        names.VERSION,
        namespace,
        names.PLURAL,
        made.name,
        {"spec": {"cancel": True}},
        _content_type=runtimekube.MERGE_PATCH,
    )
    seen = await ctx.cl.wait_phases(namespace, {made.name: "Cancelled"}, within=arms.wait_seconds(items))
    c.cancel_to_cr = seen - patched
    status = await status_of(ctx, namespace, made.name)
    c.counts = dict(status.get("items") or {})
    records_then = len(await records(ctx, made.uid))
    await asyncio.sleep(DRAIN_SECONDS)  # a bench, not a test: any late start would show by now
    found = await records(ctx, made.uid)
    event_at = ctx.log.first(made.uid, Kind.CANCELLED)
    starts = [r.started_at for r in found if r.started_at is not None]
    # Records keep times to the millisecond: a start within the rounding counts as after.
    c.started_after_event = sum(s > event_at - 0.0005 for s in starts) if not math.isnan(event_at) else -1
    c.started_after_cr = sum(s > seen - 0.0005 for s in starts)
    c.records_after_cr = len(found) - records_then
    await asyncio.to_thread(arms.wait_operator_idle, ctx.c)
    return c
