"""Read-only probes for bench/dispatch.py: kube-apiserver request counts, worker log times.

- apiserver_request_total from the apiserver's /metrics, summed by verb and resource,
  shows how many Kubernetes API calls one LongTask costs.
- Kopf's "Handler ... failed" log lines count the operator's handler errors.
- Celery's "Task NAME[ID] received" log line (millisecond resolution) is when the worker's
  main process took a message off Redis; it splits broker time from worker-pool time.
"""

from __future__ import annotations

import collections
import datetime
import re
from collections.abc import Iterator
from pathlib import Path

from longtask_dev import cluster as cluster_mod

_LABEL = re.compile(r'(\w+)="([^"]*)"')
_RECEIVED = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] (?:[\w.]+: )?Task \S+\[(\S+)\] received$"
)
_HANDLER_FAILED = re.compile(r"(Handler '[^']+' failed.*)$")

Counts = collections.Counter[str]


def api_requests(c: cluster_mod.Cluster) -> Counts:
    """Requests served so far, keyed "VERB resource[/subresource]" (non-resource URLs left out)."""
    counts: Counts = collections.Counter()
    metrics = c.kubectl("get", "--raw", "/metrics").stdout
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(labels_text))
        if labels.get("resource"):
            sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
            counts[f"{labels['verb']} {labels['resource']}{sub}"] += int(float(value))
    return counts


def api_report(phases: dict[str, tuple[int, Counts]], min_per_task: float = 0.05) -> list[str]:
    """Requests per task of each phase, for every request kind above `min_per_task` somewhere."""
    per_task = {name: {k: v / tasks for k, v in counts.items()} for name, (tasks, counts) in phases.items()}
    kinds = sorted({k for rates in per_task.values() for k, v in rates.items() if v >= min_per_task})
    lines = [
        "kube-apiserver requests per LongTask (the bench's own create, and LIST polls, included)",
        f"  {'request':<46}" + "".join(f"{name:>18}" for name in per_task),
    ]
    for kind in kinds:
        lines.append(
            f"  {kind:<46}" + "".join(f"{rates.get(kind, 0.0):>18.2f}" for rates in per_task.values())
        )
    lines.append(f"  {'total':<46}" + "".join(f"{sum(rates.values()):>18.2f}" for rates in per_task.values()))
    return lines


def handler_errors(log: Path) -> Counts:
    """Kopf handler failures in the operator's log, keyed by their message."""
    lines = log.read_text(errors="replace").splitlines()
    return collections.Counter(match[1] for line in lines if (match := _HANDLER_FAILED.search(line)))


def received_times(log: Path) -> dict[str, float]:
    """Celery task id -> unix time its worker logged "received" (local time, 1 ms resolution)."""
    return dict(_received(log))


def _received(log: Path) -> Iterator[tuple[str, float]]:
    for line in log.read_text(errors="replace").splitlines():
        if match := _RECEIVED.match(line):
            stamp = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            yield match[2], stamp.timestamp()
