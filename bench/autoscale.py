"""Autoscaler reaction times over repeated bursts, against a scale patched by hand.

It starts the real platform locally (embedded kube-apiserver, etcd, controller manager,
scheduler, the local node that runs pods as processes, Redis, the operator, the gateway),
applies examples/workerpool.yaml for a pool (min 0, max 4, 2 tasks per replica, cooldown
--cooldown), then repeats --bursts times, each time from zero worker pods:

1. WorkerPool arm: create --burst-size LongTasks (demo.sleep 1 s) at once. Measured from
   the first create call: the operator's scale patch (the Deployment's replicas seen > 0
   on a watch) and the first `started` event (a task running on a new pod).
2. Baseline arm, same run: the WorkerPool paused, the same backlog queued, then the scale
   patched by hand at once. Measured from that patch to the first `started` event: what a
   pod start costs here, the floor any autoscaler pays on top of its own reaction.

Then it prints p50/p99 of each, the ratio of arm 1's backlog -> started to arm 2's
patch -> started, and KEDA's defaults beside them (not run here: no KEDA on this machine;
its reaction is its polling interval, 30 s, plus the HPA's sync, 15 s; its scale-down
waits the HPA's 300 s stabilisation window).

With --requests it measures instead the apiserver requests per minute the autoscaler
makes for one pool (requests_per_minute; min 0, max 4, cooldown 30 s): idle (nothing
queued, at its minimum), then busy (4 tasks of 2 s created every 3 s, so counts change
and it scales), each for --requests-window seconds, counted by the apiserver itself
(apiserver_request_total, by verb and resource: requests only the autoscaler makes are
told apart from the node agent's and the controllers').
Run:

    uv run python bench/autoscale.py [--bursts 10] [--burst-size 8] [--cooldown 3]
    uv run python bench/autoscale.py --requests [--requests-window 60]

--depth-read instead measures what the autoscaler's depth read (workload.Workload.read)
costs Redis with --in-flight messages of --params-kib KiB params held by workers (a Redis of
its own, no cluster): messages really sent by Celery, moved to kombu's `unacked` hash as a
worker's fetch moves them, and claimed by the worker's own claim script on pods of
--per-pod attempts across --pools pools. It times --reads reads and reports the Redis-side
time per read (INFO commandstats) beside the body scan it replaced (a Lua HVALS over the
`unacked` hash, the old workload._DEPTHS), measured in the same run on the same data:

    uv run python bench/autoscale.py --depth-read [--in-flight 10000] [--params-kib 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from longtask_contracts import events, ledger, models, names
from longtask_dev import apirequests, procs, watch
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from longtask_operator import workload
from longtask_runtime import redisopts, sending
from longtask_worker import store

NAMESPACE = "default"
POOL = "bench"
TARGET_PATCH_P99 = 2.0
KEDA_POLL, HPA_SYNC, HPA_DOWN = 30.0, 15.0, 300.0


def create_burst(c: cluster_mod.Cluster, prefix: str, size: int) -> tuple[float, list[str]]:
    items = [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": f"{prefix}-{i}"},
            "spec": {"task": "demo.sleep", "pool": POOL, "params": {"seconds": 1, "steps": 1}},
        }
        for i in range(size)
    ]
    called = time.time()
    out = c.kubectl(
        "create", "-n", NAMESPACE, "-f", "-", "-o", "jsonpath={.metadata.uid}{\" \"}",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )  # fmt: skip
    uids = out.stdout.split()
    assert len(uids) == size, out.stdout
    return called, uids


def started_times(r: redis.Redis, uids: list[str], timeout: float = 180) -> list[float]:
    """Each task's `started` time, once every one of them succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        starts, done = [], 0
        for uid in uids:
            for _, fields in r.xrange(names.events_stream(uid)):
                event = events.TaskEvent.decode(fields)
                if event.kind is events.Kind.STARTED:
                    starts.append(event.at)
                done += event.kind is events.Kind.SUCCEEDED
        if done == len(uids):
            return starts
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {len(uids)} tasks succeeded in {timeout} s")
        time.sleep(0.2)


def wait_zero(c: cluster_mod.Cluster, deployment: str) -> None:
    def zero() -> bool:
        out = c.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"longtask.io/pool={POOL}", "-o", "name")
        obj = json.loads(c.kubectl("get", "-n", NAMESPACE, f"deployment/{deployment}", "-o", "json").stdout)
        return not out.stdout.strip() and not obj["spec"].get("replicas")

    procs.wait_until(zero, timeout=180, what="the pool to scale to zero", interval=0.5)


def set_paused(c: cluster_mod.Cluster, paused: bool) -> None:
    c.kubectl(
        "patch", "-n", NAMESPACE, f"wp/{POOL}", "--type=merge", "-p", json.dumps({"spec": {"paused": paused}})
    )


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


def run(c: cluster_mod.Cluster, bursts: int, size: int, cooldown: float) -> list[str]:
    p = platform_mod.Platform(c).start(workers=0)
    manifests = platform_mod.worker_pool_manifests(
        pool=POOL,
        min_replicas=0,
        max_replicas=4,
        tasks_per_replica=2,
        concurrency=2,
        cooldown_seconds=cooldown,
    )
    deployment = manifests[0]["metadata"]["name"]
    p.apply_worker_pool(manifests, namespace=NAMESPACE)
    r = redis.Redis.from_url(c.redis_url)
    replicas = watch.Watch(c, NAMESPACE, f"deployment/{deployment}")
    to_patch, to_started, manual = [], [], []
    try:
        for i in range(bursts):
            progress(f"burst {i + 1} of {bursts}: WorkerPool arm")
            wait_zero(c, deployment)
            called, uids = create_burst(c, f"wp{i}", size)
            starts = started_times(r, uids)
            patched = replicas.first(lambda d: watch.replicas(d) > 0, since=called)
            assert patched is not None, "no scale patch seen"
            to_patch.append(patched - called)
            to_started.append(min(starts) - called)

            progress(f"burst {i + 1} of {bursts}: baseline arm (scale patched by hand)")
            wait_zero(c, deployment)
            set_paused(c, True)
            _, uids = create_burst(c, f"hand{i}", size)
            procs.wait_until(
                lambda: sum(r.llen(q) for q in names.queue_lists(POOL)) == size,
                timeout=30,
                what="backlog queued",
            )
            by_hand = time.time()
            c.kubectl("scale", "-n", NAMESPACE, f"deployment/{deployment}", "--replicas=4")
            manual.append(min(started_times(r, uids)) - by_hand)
            set_paused(c, False)
    finally:
        replicas.close()
        r.close()
    return report(to_patch, to_started, manual, bursts=bursts, size=size, cooldown=cooldown)


def report(to_patch: list[float], to_started: list[float], manual: list[float], **setup: Any) -> list[str]:
    patch50, patch99 = quantiles(to_patch)
    start50, start99 = quantiles(to_started)
    hand50, hand99 = quantiles(manual)
    keda50 = KEDA_POLL / 2 + HPA_SYNC / 2
    return [
        f"Autoscale reaction ({setup['bursts']} bursts of {setup['size']} tasks, from zero pods; "
        f"cooldown {setup['cooldown']:g} s)",
        f"  backlog -> scale patch:               p50 {patch50:6.2f} s   p99 {patch99:6.2f} s",
        f"  backlog -> first task on a new pod:   p50 {start50:6.2f} s   p99 {start99:6.2f} s",
        f"  baseline, scale patched by hand -> first task started (pod start): "
        f"p50 {hand50:.2f} s   p99 {hand99:.2f} s",
        f"  ratio backlog->started / pod start (p50): {start50 / hand50:.2f}x",
        "",
        "KEDA's defaults (not run here): reaction = polling 30 s + HPA sync 15 s "
        f"(p50 ~{keda50:.0f} s, worst ~{KEDA_POLL + HPA_SYNC:.0f} s) plus the same pod start; "
        f"scale-down after the HPA's {HPA_DOWN:.0f} s stabilisation, longtask after its cooldown.",
        f"  ratio KEDA p50 reaction / longtask p50 patch: {keda50 / max(patch50, 1e-3):.0f}x",
        "",
        f"Target: p99 backlog -> scale patch <= {TARGET_PATCH_P99:g} s: "
        + ("met" if patch99 <= TARGET_PATCH_P99 else "MISSED"),
    ]


# The autoscaler's requests, and nobody else's here: the node agent lists and watches pods
# and patches pods/status, the controllers create and delete pods, update deployments'
# status and watch them from their start (a re-watch every few minutes may fall in a window).
_AUTOSCALER = {
    apirequests.Key("GET", "deployments"): "read",
    apirequests.Key("LIST", "deployments"): "read",
    apirequests.Key("WATCH", "deployments"): "read",
    apirequests.Key("GET", "workerpools"): "read",
    apirequests.Key("PATCH", "deployments", "scale"): "write",
    apirequests.Key("PATCH", "pods"): "write",
    apirequests.Key("PATCH", "workerpools", "status"): "write",
}
_REQUEST_RESOURCES = {"deployments", "pods", "workerpools"}


def requests_per_minute(c: cluster_mod.Cluster, window: float) -> list[str]:
    """The apiserver requests per minute of the autoscaler for one idle, then one busy pool."""
    p = platform_mod.Platform(c).start(workers=0)
    manifests = platform_mod.worker_pool_manifests(
        pool=POOL, min_replicas=0, max_replicas=4, tasks_per_replica=2, concurrency=2, cooldown_seconds=30
    )
    p.apply_worker_pool(manifests, namespace=NAMESPACE)
    procs.wait_until(
        lambda: (
            json.loads(c.kubectl("get", "-n", NAMESPACE, f"wp/{POOL}", "-o", "json").stdout)
            .get("status", {})
            .get("conditions")
        ),
        timeout=60,
        what="the WorkerPool's first status",
    )
    progress(f"idle pool: counting for {window:g} s")
    idle = _served(c, window, load=None)
    progress(f"busy pool: 4 tasks of 2 s every 3 s, counting for {window:g} s")
    busy = _served(c, window, load=lambda i: create_burst(c, f"busy{i}", 4))
    lines = [f"Apiserver requests per minute of the autoscaler, one pool ({window:g} s windows)"]
    for label, served in (("idle", idle), ("busy", busy)):
        per_minute = {key: n * 60 / window for key, n in served.items()}
        reads = sum(v for k, v in per_minute.items() if _AUTOSCALER.get(k) == "read")
        writes = sum(v for k, v in per_minute.items() if _AUTOSCALER.get(k) == "write")
        lines.append(f"  {label} pool: reads {reads:6.1f}/min   writes {writes:6.1f}/min")
        for key, rate in sorted(per_minute.items()):
            whose = "autoscaler" if key in _AUTOSCALER else "others (node agent, controllers)"
            lines.append(f"      {key!s:<32} {rate:6.1f}/min  {whose}")
    lines.append("  Target: an idle pool makes at most 1 write per minute")
    idle_writes = sum(n for k, n in idle.items() if _AUTOSCALER.get(k) == "write") * 60 / window
    lines[-1] += ": " + ("met" if idle_writes <= 1 else "MISSED")
    return lines


def _served(c: cluster_mod.Cluster, window: float, *, load: Any) -> apirequests.Counts:
    """Requests on the autoscaler's resources during `window` seconds; `load(i)` (if any)
    is called every 3 s meanwhile."""
    before = apirequests.snapshot(c)
    end, i = time.monotonic() + window, 0
    while (left := end - time.monotonic()) > 0:
        if load is not None:
            load(i)
            i += 1
        time.sleep(min(3.0, left))
    return apirequests.delta(before, apirequests.snapshot(c), resources=_REQUEST_RESOURCES)


# The depth read before issue 18 (workload._DEPTHS): LLEN of every list, then HVALS of the
# whole `unacked` hash, matching each body's routing-key suffix. Kept here as the baseline.
_OLD_DEPTHS = """
local per = tonumber(ARGV[1])
local pools = #ARGV - 1
local out = {}
for p = 1, pools do
  local queued = 0
  for i = 1, per do
    queued = queued + redis.call('LLEN', KEYS[1 + (p - 1) * per + i])
  end
  out[2 * p - 1] = queued
  out[2 * p] = 0
end
local suffixes = {}
for p = 1, pools do suffixes[p] = ARGV[p + 1] end
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  for p = 1, pools do
    local s = suffixes[p]
    if string.sub(raw, -#s) == s then
      out[2 * p] = out[2 * p] + 1
      break
    end
  end
end
return out
"""


def fill_in_flight(url: str, *, messages: int, params_kib: int, pools: list[str], per_pod: int) -> None:
    """`messages` attempts held by workers, as kombu and longtask's workers leave them: sent by
    Celery, taken off the queue into kombu's `unacked` hash and index (what kombu's QoS.append
    writes on a fetch), and claimed by the worker's claim script (the RUNNING entry and busy pod)."""
    celery = sending.celery_sender(url)
    client = redis.Redis.from_url(url)
    stores: dict[str, store.Store] = {}
    blob = "x" * (params_kib * 1024)
    for i in range(messages):
        pool = pools[i % len(pools)]
        d = ledger.Dispatch(
            namespace="bench",
            name=f"t{i}",
            uid=str(uuid.uuid4()),
            # Unvalidated: the gateway admits 64 KiB of params; the target is set at 100 KiB.
            spec=models.LongTaskSpec(task="demo.sleep", pool=pool).model_copy(
                update={"params": {"blob": blob}}
            ),
            deadline=time.time() + 3600,
        )
        client.set(names.current(d.uid), d.model_dump_json())
        celery.send_task(
            names.RUN_TASK, args=[d.model_dump(mode="json")], task_id=names.celery_task_id(d.uid, 1),
            queue=names.queue(pool),
        )  # fmt: skip
        raw = client.rpop(names.queue(pool))
        assert raw is not None
        message = json.loads(raw)
        info = message["properties"]["delivery_info"]
        tag = message["properties"]["delivery_tag"]
        client.zadd(names.KOMBU_UNACKED_INDEX, {tag: time.time()})
        client.hset(names.KOMBU_UNACKED, tag, json.dumps([message, info["exchange"], info["routing_key"]]))
        pod = f"{pool}-pod-{i // len(pools) // per_pod}"
        worker = stores.setdefault(pod, store.Store(client, pod=pod))
        assert worker.claim(d, worker=f"{pod}/1", lease_seconds=3600, tag=tag)
        if i and i % 1000 == 0:
            progress(f"{i} of {messages} messages in flight")
    client.close()


def redis_usec(client: redis.Redis, commands: list[str]) -> tuple[float, int]:
    """Microseconds Redis spent in `commands` and how many calls, since the last RESETSTAT."""
    stats: dict[str, Any] = client.info("commandstats")
    usec = sum(float(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in commands)
    calls = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)
    return usec, calls


async def time_reads(url: str, pools: list[str], reads: int) -> tuple[float, float, workload.Load]:
    """Redis µs and wall ms per workload.Workload.read of every pool; and the last load read."""
    client = redis.Redis.from_url(url)
    aclient = redisopts.async_client(url)
    reader = workload.Workload(aclient)
    try:
        await reader.read(pools)  # connect first
        client.config_resetstat()
        began = time.perf_counter()
        for _ in range(reads):
            loads = await reader.read(pools)
        wall = (time.perf_counter() - began) / reads * 1000
        usec, _ = redis_usec(client, ["llen", "zcount", "hgetall"])
    finally:
        await aclient.aclose()
        client.close()
    return usec / reads, wall, loads[pools[0]]


def time_old_scan(url: str, pools: list[str], reads: int) -> tuple[float, float, int]:
    """Redis µs and wall ms per read of the old depth script (LLENs + HVALS body scan)."""
    client = redis.Redis.from_url(url, socket_timeout=None)  # one scan may take seconds
    script = client.register_script(_OLD_DEPTHS)
    keys = [names.KOMBU_UNACKED, *(key for pool in pools for key in names.queue_lists(pool))]
    args: list[Any] = [len(names.PRIORITY_STEPS), *(f'"{names.queue(pool)}"]' for pool in pools)]
    try:
        script(keys=keys, args=args)  # load it first
        client.config_resetstat()
        began = time.perf_counter()
        for _ in range(reads):
            out = script(keys=keys, args=args)
        wall = (time.perf_counter() - began) / reads * 1000
        usec, _ = redis_usec(client, ["evalsha"])
    finally:
        client.close()
    return usec / reads, wall, int(out[1])


def depth_read(*, messages: int, params_kib: int, pools: int, per_pod: int, reads: int) -> list[str]:
    """Measure the depth read's Redis time (see the module's docstring)."""
    names_ = [f"bench-{i}" for i in range(pools)]
    folder = Path(tempfile.mkdtemp(prefix="depth-read-"))
    port = procs.free_port()
    child = cluster_mod.redis_child(port=port, data=folder / "data", log=folder / "redis.log").start()
    try:
        cluster_mod.wait_for_redis(port=port, child=child)
        url = f"redis://127.0.0.1:{port}/0"
        progress(f"filling Redis: {messages} messages of {params_kib} KiB params in flight")
        fill_in_flight(url, messages=messages, params_kib=params_kib, pools=names_, per_pod=per_pod)
        progress(f"timing {reads} reads of each")
        new_usec, new_wall, load = asyncio.run(time_reads(url, names_, reads))
        progress(f"workload.read: Redis {new_usec:.1f} us, wall {new_wall:.2f} ms per read; now the baseline")
        old_usec, old_wall, old_fetched = time_old_scan(url, names_, max(1, reads // 10))
        used = redis.Redis.from_url(url).info("memory")["used_memory_human"]
    finally:
        child.stop()
        shutil.rmtree(folder, ignore_errors=True)
    busy = -(-messages // pools // per_pod)
    return [
        f"Depth read ({messages} messages in flight, {params_kib} KiB params each, Redis holding {used}; "
        f"{pools} pools, {per_pod} attempts per pod, {busy} busy pods per pool)",
        f"  workload.read (LLEN + ZCOUNT + HGETALL per pool): Redis {new_usec:8.1f} us per read, "
        f"wall {new_wall:6.2f} ms   (pool {names_[0]}: running {load.running}, busy pods {len(load.pods)})",
        f"  baseline, HVALS body scan (old _DEPTHS):        Redis {old_usec:8.1f} us per read, "
        f"wall {old_wall:6.2f} ms   (pool {names_[0]}: fetched {old_fetched})",
        f"  ratio baseline / workload.read (Redis time): {old_usec / max(new_usec, 1e-3):.0f}x",
        f"Target: Redis time per read < 1000 us: {'met' if new_usec < 1000 else 'MISSED'}",
    ]


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=10, help="bursts per arm")
    parser.add_argument("--burst-size", type=int, default=8, help="LongTasks per burst")
    parser.add_argument("--cooldown", type=float, default=3.0, help="the WorkerPool's cooldownSeconds")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep kubeconfig and logs here")
    parser.add_argument(
        "--depth-read", action="store_true", help="only measure the depth read's Redis time (no cluster)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=10_000, help="--depth-read: messages held by workers"
    )
    parser.add_argument("--params-kib", type=int, default=100, help="--depth-read: params per message, KiB")
    parser.add_argument("--pools", type=int, default=10, help="--depth-read: pools they are spread over")
    parser.add_argument("--per-pod", type=int, default=4, help="--depth-read: attempts per busy pod")
    parser.add_argument("--reads", type=int, default=200, help="--depth-read: reads timed")
    parser.add_argument(
        "--requests",
        action="store_true",
        help="measure the autoscaler's apiserver requests per minute instead",
    )
    parser.add_argument("--requests-window", type=float, default=60.0, help="seconds counted per pool state")
    args = parser.parse_args(argv)
    if args.depth_read:
        print("\n".join(depth_read(messages=args.in_flight, params_kib=args.params_kib, pools=args.pools,
                                   per_pod=args.per_pod, reads=args.reads)))  # fmt: skip
        return 0
    progress("starting the cluster and the platform")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        if args.requests:
            lines = requests_per_minute(c, args.requests_window)
        else:
            lines = run(c, args.bursts, args.burst_size, args.cooldown)
        progress("stopping")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
