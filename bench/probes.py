"""Read-only probes for bench/dispatch.py: apiserver request counts, memory, log times.

- apiserver_request_total from the apiserver's /metrics, summed by verb and resource,
  shows how many Kubernetes API calls one LongTask costs.
- VmRSS and VmHWM from /proc/<pid>/status: a process's memory now and at its peak.
- The operator's longtask_tasks gauge (LongTasks it has seen, by phase) tells when a
  restarted operator has read every LongTask.
- Kopf's "Handler ... failed" log lines (WorkerPools) and taskwatch's "handling a ... event
  ... failed" lines (LongTasks) count the operator's handler errors.
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
_HANDLER_FAILED = re.compile(r"(Handler '[^']+' failed.*|handling an? \S+ event of this LongTask failed.*)$")

Counts = collections.Counter[str]
# Requests on these resources are what a LongTask costs; the rest is the background of the
# node agent and the controllers (leases, nodes, pods), shown but not counted per task.
TASK_RESOURCES = ("longtasks", "events")


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


def is_task_request(kind: str) -> bool:
    """True for "VERB longtasks[/sub]" and "VERB events"."""
    return kind.split(" ", 1)[1].split("/", 1)[0] in TASK_RESOURCES


def task_requests(counts: Counts) -> int:
    return sum(v for k, v in counts.items() if is_task_request(k))


def api_report(
    phases: dict[str, tuple[int, Counts]], *, min_per_task: float = 0.05, width: int = 13
) -> list[str]:
    """Requests per task of each phase, for every request kind above `min_per_task` somewhere."""
    per_task = {name: {k: v / tasks for k, v in counts.items()} for name, (tasks, counts) in phases.items()}
    kinds = sorted(
        {k for rates in per_task.values() for k, v in rates.items() if v >= min_per_task},
        key=lambda k: (not is_task_request(k), k.split(" ", 1)[1], k),
    )

    def row(label: str, values: list[float]) -> str:
        return f"  {label:<34}" + "".join(f"{v:>{width}.2f}" for v in values)

    lines = [f"  {'request':<34}" + "".join(f"{name:>{width}}" for name in per_task)]
    for kind in kinds:
        mark = "" if is_task_request(kind) else " (bg)"
        lines.append(row(kind + mark, [rates.get(kind, 0.0) for rates in per_task.values()]))
    lines.append(
        row(
            "per task: longtasks + events",
            [sum(v for k, v in rates.items() if is_task_request(k)) for rates in per_task.values()],
        )
    )
    lines.append(row("all requests", [sum(rates.values()) for rates in per_task.values()]))
    return lines


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: resident memory now, and its peak."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    rss, peak = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    return rss, peak


def tasks_seen(metrics: str) -> int | None:
    """The sum over phases of the operator's longtask_tasks gauge; None if it has none."""
    values = [
        float(line.rpartition(" ")[2]) for line in metrics.splitlines() if line.startswith("longtask_tasks{")
    ]
    return int(sum(values)) if values else None


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
