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
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis

from longtask_contracts import events, names
from longtask_dev import apirequests, procs, watch
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod

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


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=10, help="bursts per arm")
    parser.add_argument("--burst-size", type=int, default=8, help="LongTasks per burst")
    parser.add_argument("--cooldown", type=float, default=3.0, help="the WorkerPool's cooldownSeconds")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep kubeconfig and logs here")
    parser.add_argument(
        "--requests",
        action="store_true",
        help="measure the autoscaler's apiserver requests per minute instead",
    )
    parser.add_argument("--requests-window", type=float, default=60.0, help="seconds counted per pool state")
    args = parser.parse_args(argv)
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
