"""The printed report of bench/dispatch.py: one function per section, and the targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import arms
import arms_scale
import ltclient
import probes
import recorder

# The targets docs/benchmarks.md names, printed beside the figures.
TARGET_REQUESTS = 3.0  # apiserver requests per short task: create + status + at most one more
TARGET_P50_MS, TARGET_P99_MS = 20.0, 100.0  # create called -> started, both paths
TARGET_RATIO = 0.4  # tasks/s to the last `succeeded` event, against raw Celery
TARGET_CR_LAG = 2.0  # seconds from the last `succeeded` event to every CR Succeeded
TARGET_RSS_MB = 300.0  # operator RSS with --scale LongTasks
TARGET_CAUGHT_UP = 30.0  # seconds from a restarted operator's start to caught up
TARGET_PROBE = 1.0  # seconds from create called to started, for a task created right after it
TARGET_SUBMIT = 1.3  # gateway submit p99 over a direct create's, at 64 concurrent


@dataclass
class Results:
    """Everything one run measured; a skipped arm stays empty."""

    samples: int = 0
    lat: dict[str, list[arms.Sample]] = field(default_factory=dict)  # "direct", "gateway", "raw"
    submits: dict[str, list[ltclient.Created]] = field(default_factory=dict)  # "direct", "gateway"
    bursts: list[tuple[arms.Burst, arms.Burst]] = field(default_factory=list)  # (longtask, raw)
    scale: arms_scale.Scale | None = None


# -- figures ----------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of the values that are not NaN (NaN if there are none)."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def diff(samples: Sequence[arms.Sample], a: str, b: str) -> list[float]:
    return [getattr(s, b) - getattr(s, a) for s in samples]


def ms_row(label: str, values: Sequence[float], width: int = 46) -> str:
    ms = [v * 1000 for v in values if not math.isnan(v)]
    if not ms:
        return f"  {label:<{width}}{'n/a':>9}"
    cols = (percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms), max(ms))
    return f"  {label:<{width}}" + "".join(f"{v:>9.1f}" for v in cols)


def add_received(samples: list[arms.Sample], log: Path) -> None:
    """Fill in when the worker logged each task "received"."""
    received = probes.received_times(log)
    for s in samples:
        s.received = received.get(s.task_id, math.nan)


# -- sections ---------------------------------------------------------------------------
def latency(r: Results) -> list[str]:
    raw = r.lat["raw"]
    raw_lat = diff(raw, "called", "started")
    lines = [
        f"Dispatch latency: create called -> the worker's `started` event, {r.samples} sequential tasks",
        f"per arm (ms){'':<36}{'p50':>9}{'p99':>9}{'mean':>9}{'max':>9}",
    ]
    for path in ("direct", "gateway"):
        if path in r.lat:
            lines.append(ms_row(f"longtask, {PATH_LABEL[path]}", diff(r.lat[path], "called", "started")))
    lines.append(ms_row("raw Celery: send_task called -> started", raw_lat))
    for path in ("direct", "gateway"):
        if path in r.lat:
            lt = diff(r.lat[path], "called", "started")
            ratios = [percentile(lt, p) / percentile(raw_lat, p) for p in (50, 99)]
            lines.append(f"  ratio {path}/raw: {ratios[0]:.1f}x at p50, {ratios[1]:.1f}x at p99")
    for path in ("direct", "gateway"):
        if path in r.lat:
            lines += steps(path, r.lat[path])
    lines += [
        "  raw Celery, step by step:",
        ms_row("  send_task call", diff(raw, "called", "returned")),
        ms_row("  send_task returned -> worker received", diff(raw, "returned", "received")),
        ms_row("  worker received -> task started", diff(raw, "received", "started")),
        ms_row("  started -> finished (no-op task)", diff(raw, "started", "finished")),
        '  ("received" is Celery\'s log line, 1 ms resolution)',
    ]
    return lines


PATH_LABEL = {"direct": "direct create: called -> started", "gateway": "gateway POST: called -> started"}


def steps(path: str, lt: list[arms.Sample]) -> list[str]:
    call = "create call" if path == "direct" else "POST to the gateway"
    lines = [
        f"  longtask {path}, step by step:",
        ms_row(f"  {call} (request -> response)", diff(lt, "called", "returned")),
        ms_row("  response -> `queued` event (operator)", diff(lt, "returned", "queued")),
        ms_row("  `queued` event -> worker received", diff(lt, "queued", "received")),
        ms_row("  worker received -> `started` event", diff(lt, "received", "started")),
        ms_row("  `started` -> `succeeded` (no-op task)", diff(lt, "started", "finished")),
    ]
    if missing := sum(math.isnan(s.queued) for s in lt):
        lines.append(f"  warning: {missing} LongTasks ran but never got a `queued` event")
    return lines


def submit(r: Results) -> list[str]:
    per = {path: [m.returned - m.called for m in made] for path, made in r.submits.items()}
    count = len(next(iter(r.submits.values())))
    lines = [
        f"Submit latency: call -> response, {count} creates per path, {arms.IN_FLIGHT} in flight",
        f"(ms){'':<44}{'p50':>9}{'p99':>9}{'mean':>9}{'max':>9}",
        ms_row("direct create_namespaced_custom_object", per["direct"]),
        ms_row("gateway POST /v1/namespaces/{ns}/tasks", per["gateway"]),
        f"  ratio gateway/direct: {submit_ratio(r, 50):.2f}x at p50, {submit_ratio(r, 99):.2f}x at p99",
    ]
    for path, made in r.submits.items():
        span = max(m.returned for m in made) - min(m.called for m in made)
        lines.append(f"  {path}: {len(made) / span:.0f} creates/s")
    return lines


def submit_ratio(r: Results, p: float) -> float:
    per = {path: [m.returned - m.called for m in made] for path, made in r.submits.items()}
    return percentile(per["gateway"], p) / percentile(per["direct"], p)


def burst(lt: arms.Burst, raw: arms.Burst) -> list[str]:
    def row(label: str, seconds: float) -> str:
        return f"  {label:<46}{seconds:>9.2f}{lt.tasks / seconds:>9.1f}"

    lines = [
        f"Burst of {lt.tasks} no-op tasks (created {arms.IN_FLIGHT} in flight){'':<13}{'s':>9}{'tasks/s':>9}",
        row("longtask: all created (create calls returned)", lt.submitted),
        row("longtask: last `queued` event (operator)", lt.last_queued),
        row("longtask: last `started` event (worker)", lt.last_started),
        row("longtask: last `succeeded` event", lt.finished),
        row("longtask: every CR status Succeeded (watch)", lt.statuses),
        row("raw Celery: all sent", raw.submitted),
        row("raw Celery: last task finished", raw.finished),
        f"  ratio longtask/raw in tasks/s to the last `succeeded`: {raw.finished / lt.finished:.2f}x",
        f"  CR lag (last `succeeded` event -> every CR Succeeded): {lt.cr_lag:.2f} s",
    ]
    if lt.without_queued:
        lines.append(f"  warning: {lt.without_queued} LongTasks ran but never got a `queued` event")
    return lines


def requests(rec: recorder.Recorder) -> list[str]:
    return [
        "kube-apiserver requests per LongTask, by verb and resource (apiserver_request_total before and",
        "after each arm; the bench's own LIST/WATCH subtracted, its creates kept; (bg): node agent and",
        "controllers, not counted per task)",
        *probes.api_report(rec.per_task()),
    ]


def scale(s: arms_scale.Scale, rec: recorder.Recorder) -> list[str]:
    lines = [
        f"Scale: {s.tasks} LongTasks kept in namespace {arms_scale.NAMESPACE}",
        f"  {s.unfinished} Queued (a pool no worker consumes), {s.running} Running, the rest Succeeded;",
        f"  filled in {s.fill_settled:.1f} s ({s.tasks / s.fill_created:.0f} creates/s;"
        f" {s.tasks / s.fill_settled:.1f} tasks/s until every status settled)",
        "  memory, settled (MiB)        RSS     peak",
    ]
    lines += [f"    {name:<24}{rss:>8.0f}{peak:>9.0f}" for name, (rss, peak) in s.memory.items()]
    lines.append(
        f"  LIST of every LongTask in the cluster{'items':>9}{'pages':>7}{'MB':>9}{'ms':>9}"
        "  CPU s (apiserver + etcd)"
    )
    for cost in s.lists:
        label = f"in pages of {cost.limit}" if cost.limit else "in one page"
        lines.append(
            f"    {label:<34}{cost.items:>9}{cost.pages:>7}{cost.bytes / 1e6:>9.1f}"
            f"{cost.seconds * 1000:>9.0f}{sum(cost.cpu.values()):>9.2f}"
        )
    rss, peak = s.memory_after
    lines += [
        f"  operator killed (SIGKILL); {s.restart} LongTasks created while it was down"
        f" ({s.queued_while_down} queued meanwhile); then started. From its start:",
        f"    {'metrics endpoint up (its startup handler ran)':<58}{fmt_s(s.up):>10}",
        f"    {f'every LongTask seen ({s.total}, longtask_tasks gauge)':<58}{fmt_s(s.seen):>10}",
        f"    {'every task created while it was down `queued`':<58}{fmt_s(s.queued):>10}",
        f"    {'caught up (the later of the two)':<58}{fmt_s(s.caught_up):>10}",
        f"    {f'probe created at {s.probe_created:.2f} s: create called -> queued':<58}"
        f"{fmt_s(s.probe_queued):>10}",
        f"    {'  ... -> started (after the tasks queued before it)':<58}{fmt_s(s.probe_latency):>10}",
        f"    {'operator RSS once caught up (MiB), and its peak':<58}{rss:>10.0f}{peak:>9.0f}",
    ]
    counts = rec.requests("restart")
    if counts:
        lines.append(f"    apiserver requests, kill -> settled: {sum(counts.values())}, the most:")
        lines += [f"      {kind:<54}{count:>10}" for kind, count in counts.most_common(8)]
    return lines


def fmt_s(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"


def errors(operator_logs: Sequence[Path]) -> list[str]:
    found = sum((probes.handler_errors(log) for log in operator_logs), probes.Counts())
    if not found:
        return ["Operator handler errors: none"]
    return ["Operator handler errors (what a failed one left undone, the task sweep redoes)"] + [
        f"  {count:>5} x {message}" for message, count in found.most_common(5)
    ]


# -- targets ----------------------------------------------------------------------------
def targets(r: Results, rec: recorder.Recorder) -> list[str]:
    checks: list[tuple[str, str, bool]] = []
    for name, (tasks, counts) in rec.per_task().items():
        if name.startswith(("lat ", "burst ")):
            per = probes.task_requests(counts) / tasks
            checks.append((f"requests per task <= 3 ({name})", f"{per:.2f}", per <= TARGET_REQUESTS))
    for path in ("direct", "gateway"):
        if path in r.lat:
            lat = [v * 1000 for v in diff(r.lat[path], "called", "started")]
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            checks.append((f"dispatch p50 <= 20 ms ({path})", f"{p50:.1f} ms", p50 <= TARGET_P50_MS))
            checks.append((f"dispatch p99 <= 100 ms ({path})", f"{p99:.1f} ms", p99 <= TARGET_P99_MS))
    for lt, raw in r.bursts:
        ratio = raw.finished / lt.finished
        checks.append((f"throughput >= 0.4x raw ({lt.tasks})", f"{ratio:.2f}x", ratio >= TARGET_RATIO))
        checks.append((f"CR lag <= 2 s ({lt.tasks})", f"{lt.cr_lag:.2f} s", lt.cr_lag <= TARGET_CR_LAG))
    if s := r.scale:
        mb = max(s.memory["operator"][0], s.memory_after[0]) * 2**20 / 1e6
        checks += [
            (f"operator RSS <= 300 MB ({s.tasks} LongTasks)", f"{mb:.0f} MB", mb <= TARGET_RSS_MB),
            ("restarted operator caught up <= 30 s", fmt_s(s.caught_up), s.caught_up <= TARGET_CAUGHT_UP),
            ("task created after restart started <= 1 s", fmt_s(s.probe_latency), s.probe_latency <= 1.0),
        ]
    if r.submits:
        ratio = submit_ratio(r, 99)
        checks.append(("gateway submit p99 <= 1.3x direct (64)", f"{ratio:.2f}x", ratio <= TARGET_SUBMIT))
    return ["Targets"] + [f"  {name:<48}{got:>12}   {'met' if ok else 'MISSED'}" for name, got, ok in checks]
