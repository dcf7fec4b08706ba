"""Leader election: how long the operators take to hand over after the leader dies or stops.

It starts the platform (embedded kube-apiserver + etcd, Redis, the operator, one worker on
pool default, the gateway) and a second operator, a standby. Each round ends the leader
(SIGKILL, or SIGTERM in the second half) and at that instant creates a LongTask
(demo.noop); it takes, from the signal: the time until the Lease's holderIdentity names
the standby (read every 20 ms), and the time until the task's `started` event is in Redis
(a worker started it: the new leader dispatched it). Then it starts the ended operator
again, a standby now, and the next round ends the other one. The operators have distinct
identities (as two pods do), so after a SIGKILL the standby waits the lease out; a
SIGTERM releases it. It prints p50 and p99 (nearest rank) and the maximum and asserts
nothing. Run:

    uv run python bench/leader.py [--rounds 10] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import kubernetes
import redis

from longtask_contracts import events, names
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from longtask_operator import settings
from longtask_runtime import kube as runtimekube

NAMES = ("operator", "operator-2")  # the platform's operator, and the second one
LEASE = "longtask-operator"
POLL_SECONDS = 0.02


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


class Bench:
    def __init__(self, c: cluster_mod.Cluster, p: platform_mod.Platform) -> None:
        self.c = c
        self.p = p
        api = runtimekube.login_sync(kubeconfig=c.kubeconfig)
        self.coordination = kubernetes.client.CoordinationV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.redis = redis.Redis.from_url(c.redis_url, decode_responses=True)

    def holder(self) -> str:
        lease = self.coordination.read_namespaced_lease(LEASE, "default")
        return str(lease.spec.holder_identity or "")

    def create(self) -> str:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": f"b-{uuid.uuid4().hex[:10]}"},
            "spec": {"task": "demo.noop"},
        }
        obj = self.custom.create_namespaced_custom_object(
            names.GROUP, names.VERSION, "default", names.PLURAL, body
        )
        return str(obj["metadata"]["uid"])

    def started(self, uid: str) -> bool:
        return any(
            events.TaskEvent.decode(fields).kind == events.Kind.STARTED
            for _, fields in self.redis.xrange(names.events_stream(uid))
        )

    def round(self, leader: str, standby: str, sig: int) -> tuple[float, float]:
        """End `leader` with `sig`; (seconds until the Lease names `standby`, seconds until a
        task created at that instant has started), both from the signal."""
        child = self.c.child(leader)
        assert child.popen is not None
        t0 = time.monotonic()
        os.killpg(child.popen.pid, sig)
        uid = self.create()
        lease_at = start_at = math.nan
        while math.isnan(lease_at) or math.isnan(start_at):
            now = time.monotonic()
            if math.isnan(lease_at) and self.holder() == f"dev-{standby}":
                lease_at = now - t0
            if math.isnan(start_at) and self.started(uid):
                start_at = now - t0
            if now - t0 > 120:
                raise RuntimeError(f"no takeover by {standby} within 120 s")
            time.sleep(POLL_SECONDS)
        child.popen.wait(timeout=60)
        self.c.children.remove(child)
        self.p.start_operator(name=leader, standby=True)  # back, as the standby of the next round
        return lease_at, start_at


def run(c: cluster_mod.Cluster, *, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    p = platform_mod.Platform(c).start(workers=1)
    bench = Bench(c, p)
    p.start_operator(name=NAMES[1], standby=True)
    results: dict[str, tuple[list[float], list[float]]] = {}
    leader, standby = NAMES
    for label, sig in (("SIGKILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
        lease, start = results.setdefault(label, ([], []))
        for i in range(rounds):
            took = bench.round(leader, standby, sig)
            lease.append(took[0])
            start.append(took[1])
            progress(
                f"{label} round {i + 1}: Lease after {took[0]:.2f} s, a task started after {took[1]:.2f} s"
            )
            leader, standby = standby, leader
    return results


def report(results: dict[str, tuple[list[float], list[float]]], rounds: int) -> list[str]:
    cfg = settings.OperatorSettings()
    lines = [
        f"leader takeover, {rounds} rounds each; lease {cfg.leader_lease_seconds} s, renew deadline "
        f"{cfg.leader_renew_deadline_seconds:g} s, retry {cfg.leader_retry_seconds:g} s;"
        " seconds from the signal",
        f"  {'':<46}{'p50':>9}{'p99':>9}{'max':>9}",
    ]
    for label, (lease, start) in results.items():
        for what, values in (
            (f"{label}: the Lease names the standby", lease),
            (f"{label}: a task created then starts", start),
        ):
            cols = (statistics.median(values), nearest_rank(values, 0.99), max(values))
            lines.append(f"  {what:<46}" + "".join(f"{v:>9.2f}" for v in cols))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per signal")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep kubeconfig and logs here")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args(argv)
    progress("starting the cluster and the platform")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        results = run(c, rounds=args.rounds)
        progress("stopping")
    print("\n".join(report(results, args.rounds)))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
