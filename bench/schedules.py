"""Schedules: how late a LongTaskSchedule's runs are created after their scheduled time.

It starts the platform (embedded kube-apiserver + etcd, Redis, the operator, one worker
on pool default), applies a LongTaskSchedule `@every <--every>s` of demo.noop, and watches
its runs (LongTasks labelled longtask.io/schedule) from before the schedule exists. For
each run it takes (the time its ADDED watch event is received) - (its scheduled time, the
longtask.io/scheduled-at annotation, which is also in its name): the lateness a user sees
through the apiserver, the operator's wake-up, create call and the watch's delivery
included. After --runs runs it prints p50, p99 (nearest rank) and the maximum against the
target (p99 <= 1 s), the runs missed (status.missedRuns) and any duplicate, and asserts
nothing. Run:

    uv run python bench/schedules.py [--runs 30] [--every 2] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes

from longtask_contracts import names
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from longtask_runtime import kube as runtimekube

TARGET_P99 = 1.0  # seconds, run created (ADDED seen) - scheduled time
NAMESPACE = "bench-schedules"
NAME = "bench"


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


def measure(
    c: cluster_mod.Cluster, *, runs: int, every: int
) -> tuple[list[float], list[str], dict[str, Any]]:
    """(lateness of each run in seconds, the run names in order seen, the schedule's status)."""
    c.kubectl("create", "namespace", NAMESPACE)
    api = runtimekube.login_sync(kubeconfig=c.kubeconfig)
    custom = kubernetes.client.CustomObjectsApi(api)
    listed = custom.list_namespaced_custom_object(names.GROUP, names.VERSION, NAMESPACE, names.PLURAL)
    schedule = {
        "apiVersion": names.API_VERSION,
        "kind": names.SCHEDULE_KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "schedule": f"@every {every}s",
            "template": {"spec": {"task": "demo.noop"}},
            "successfulRunsHistoryLimit": 5,
        },
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(schedule))
    late: list[float] = []
    seen: list[str] = []
    stream = kubernetes.watch.Watch().stream(
        custom.list_namespaced_custom_object,
        names.GROUP,
        names.VERSION,
        NAMESPACE,
        names.PLURAL,
        label_selector=f"{names.SCHEDULE_LABEL}={NAME}",
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=every * runs + 120,
    )
    for event in stream:
        received = time.time()
        if event["type"] != "ADDED":
            continue
        meta = event["object"]["metadata"]
        at = datetime.datetime.fromisoformat(
            meta["annotations"][names.SCHEDULED_AT_ANNOTATION].replace("Z", "+00:00")
        )
        late.append(received - at.timestamp())
        seen.append(meta["name"])
        progress(f"run {len(seen)}: {meta['name']} seen {late[-1]:.3f} s after its time")
        if len(seen) >= runs:
            break
    c.kubectl("patch", "-n", NAMESPACE, f"lts/{NAME}", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    status = (
        json.loads(c.kubectl("get", "-n", NAMESPACE, f"lts/{NAME}", "-o", "json").stdout).get("status") or {}
    )
    return late, seen, status


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def report(late: list[float], seen: list[str], status: dict[str, Any], every: int) -> list[str]:
    p99 = nearest_rank(late, 0.99)
    stamps = sorted(int(name.rsplit("-", 1)[1]) for name in seen)
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b - a != every]
    return [
        f"{len(late)} runs of `@every {every}s` (demo.noop);"
        " lateness = ADDED watch event received - scheduled time",
        f"  p50 {statistics.median(late):.3f} s   p99 {p99:.3f} s"
        f"   max {max(late):.3f} s   min {min(late):.3f} s",
        f"  duplicates {len(seen) - len(set(seen))}   times skipped between runs {len(gaps)}"
        f"   status.missedRuns {status.get('missedRuns', 0)}",
        f"target: p99 <= {TARGET_P99:.1f} s: {'met' if p99 <= TARGET_P99 else 'NOT met'}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs measured")
    parser.add_argument("--every", type=int, default=2, help="the schedule's interval, seconds")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep kubeconfig and logs here")
    args = parser.parse_args(argv)
    progress("starting the cluster and the platform")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        platform_mod.Platform(c).start(workers=1)
        late, seen, status = measure(c, runs=args.runs, every=args.every)
        progress("stopping")
    print("\n".join(report(late, seen, status, args.every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
