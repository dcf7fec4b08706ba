"""The worker's Prometheus metrics (definitions and label helpers only; exposition.py serves them).

Celery runs tasks in prefork child processes, so these live in prometheus-client's
multiprocess mode when the worker serves metrics: exposition.prepare() must run before
this module is imported. Every gauge says how its per-process values combine.
The `task` label takes registered task names only (code, not user input); anything else
is "other", so a typo in spec.task cannot add series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from longtask_contracts import buckets
from longtask_worker import sdk

TASK_DURATION = Histogram(
    "longtask_worker_task_duration_seconds",
    "Seconds one attempt ran, by task and outcome (succeeded, retrying, failed, cancelled, stale).",
    ["task", "outcome"],
    buckets=buckets.SECONDS,
)
ATTEMPTS = Counter("longtask_worker_attempts_total", "Attempts this worker started (claimed).", ["task"])
HEARTBEATS = Counter(
    "longtask_worker_heartbeats_total",
    "Lease takes and renewals of running attempts (one per claim, then every third of the lease).",
)
HEARTBEAT_FAILURES = Counter(
    "longtask_worker_heartbeat_failures_total", "Lease renewals that failed (Redis unreachable)."
)
LAST_HEARTBEAT = Gauge(
    "longtask_worker_last_heartbeat_timestamp_seconds",
    "Unix time of the last lease take or renewal of the attempt each worker process runs; 0 when idle.",
    multiprocess_mode="liveall",  # one series per live process (pid), so a stalled one shows
)
# -- batches: one series per (task, outcome) for every item attempt a lane ran. An item
# attempt is not a task attempt: it is counted here, never in TASK_DURATION or ATTEMPTS.
ITEMS = Counter(
    "longtask_worker_items_total",
    "Batch item attempts this worker ended, by task and outcome: succeeded, failed (for good), "
    "retried (failed, another attempt follows), cancelled.",
    ["task", "outcome"],
)
ITEM_DURATION = Histogram(
    "longtask_worker_item_duration_seconds",
    "Seconds one batch item attempt ran, by task.",
    ["task"],
    buckets=buckets.SECONDS,
)
CANCELLATIONS = Counter(
    "longtask_worker_cancellations_total",
    "Attempts that ended Cancelled: by the task (cooperative) or stopped after the grace time (forced).",
    ["how"],
)
BUSY_SLOTS = Gauge(
    "longtask_worker_busy_slots",
    "Worker processes running an attempt right now.",
    multiprocess_mode="livesum",  # summed over the live processes; a dead one drops out
)
SLOTS = Gauge(
    "longtask_worker_slots",
    "Attempts this worker can run at once (its concurrency).",
    multiprocess_mode="livesum",  # set once, by the main process
)


def task_label(name: str) -> str:
    """`name` if a task of that name is registered here, else "other" (bounded labels)."""
    return name if name in sdk.registered() else "other"
