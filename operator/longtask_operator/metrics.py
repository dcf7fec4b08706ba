"""The operator's Prometheus metrics (definitions only; the server starts in handlers).

Every metric is listed with its meaning and the action it calls for in docs/metrics.md.
Labels are bounded: `pool` is capped by pool_label, `phase` and `direction` are enums.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from longtask_contracts import buckets

DISPATCHED = Counter("longtask_operator_dispatched_total", "Attempts sent to a worker queue.", ["pool"])
# spec.pool is user input: the first MAX_POOLS distinct pools get their own series, the
# rest share pool="other", so a typo-laden cluster cannot grow the series without bound.
MAX_POOLS = 50
_pools: set[str] = set()


def pool_label(pool: str) -> str:
    if pool in _pools or len(_pools) < MAX_POOLS:
        _pools.add(pool)
        return pool
    return "other"


EVENTS = Counter("longtask_operator_events_total", "Worker events consumed from the status stream.", ["kind"])
STATUS_PATCHES = Counter("longtask_operator_status_patches_total", "LongTask status patches written.")
STATUS_WRITE_FAILURES = Counter(
    "longtask_operator_status_write_failures_total",
    "LongTask status writes that failed (the task is parked).",
)
STATUS_PARKED = Gauge(
    "longtask_operator_status_parked",
    "LongTasks whose status writes or reads keep failing, retried with backoff.",
)
STATUS_SYNC_LAG = Gauge(
    "longtask_operator_status_sync_lag_seconds",
    "Age of the oldest status-stream entry the operator has not acknowledged (0: caught up).",
)
STATUS_SYNC_BACKLOG = Gauge(
    "longtask_operator_status_sync_backlog",
    "Status-stream entries not yet acknowledged: delivered and pending, plus not yet read.",
)
RESENT_UNCLAIMED = Counter(
    "longtask_operator_resent_unclaimed_total",
    "Attempts sent again: fetched by a worker that never started them.",
)
SWEPT = Counter(
    "longtask_operator_swept_total",
    "What the task sweep repaired: first attempts never sent (unsent), tasks whose LongTask "
    "was deleted while the operator was away (orphan; found by a sweep or at a LIST).",
    ["kind"],
)
REDIS_RESETS = Counter(
    "longtask_operator_redis_resets_total",
    "Times the operator found Redis reset (redisrepair.py): cause=changed, another server process "
    "(a restart or a failover); cause=lost, the operator's marker key gone (restarted empty or from "
    "older data, or a Redis the operator meets for the first time).",
    ["cause"],
)
REDIS_RESENT = Counter(
    "longtask_operator_redis_resent_total",
    "What the operator sent again after a Redis reset, by kind: first (a first attempt), resend "
    "(an attempt whose message was lost), new (a new attempt: its record, or its lease and end, "
    "were lost), cancel (a cancel whose state was lost), settled (a task Redis had unfinished whose "
    "LongTask had ended: its end recorded again, so it does not run again).",
    ["kind"],
)
MAINTENANCE_FAILURES = Counter(
    "longtask_operator_maintenance_failures_total",
    "Per-task maintenance steps that failed (retried next tick).",
)
DLQ_DEPTH = Gauge("longtask_dlq_depth", "Tasks in the dead-letter queue.")
DLQ_ADDED = Counter("longtask_dlq_added_total", "Tasks dead-lettered (retries exhausted or poison).")
LEASE_EXPIRIES = Counter(
    "longtask_operator_lease_expiries_total",
    "Attempts whose lease ran out: their worker died or stalled (recorded as WorkerLost).",
)
RETRIES = Counter(
    "longtask_operator_retries_total", "Attempts that ended Retrying (another attempt follows)."
)
TASKS = Gauge("longtask_tasks", "LongTasks the operator sees, by phase.", ["phase"])
DISPATCH_LATENCY = Histogram(
    "longtask_dispatch_latency_seconds",
    "Seconds from an attempt being queued to a worker starting it.",
    ["pool"],
    buckets=buckets.SECONDS,
)

# -- worker pools: queued/running/oldest for every pool with work (observe.py), and the
# autoscaler's figures (autoscale.py) for the pools of WorkerPool objects
POOL_QUEUED = Gauge(
    "longtask_pool_queued", "Attempts waiting in the pool's queue (every priority).", ["pool"]
)
POOL_RUNNING = Gauge("longtask_pool_running", "Attempts held by the pool's workers.", ["pool"])
POOL_OLDEST_QUEUED = Gauge(
    "longtask_pool_oldest_queued_age_seconds",
    "Age of the oldest attempt waiting in the pool's queue (0: none waits).",
    ["pool"],
)
POOL_ITEMS_QUEUED = Gauge(
    "longtask_pool_items_queued",
    "Batch items the pool could start now: per batch, its waiting items up to its free lanes "
    "(spec.parallelism less the lanes running), summed over the pool's batches.",
    ["pool"],
)
POOL_DESIRED = Gauge("longtask_pool_desired_replicas", "Worker replicas the autoscaler wants.", ["pool"])
POOL_REPLICAS = Gauge("longtask_pool_replicas", "Worker replicas the pool's Deployment has.", ["pool"])
AUTOSCALER_PASSES = Counter(
    "longtask_autoscaler_passes_total",
    "Passes of the autoscaler over every WorkerPool (decisions from its caches).",
)
POOL_DECISIONS = Counter(
    "longtask_pool_scale_decisions_total",
    "Changes of a pool's replicas, by direction.",
    ["pool", "direction"],
)


def forget_pool(pool: str) -> None:
    """Drop a deleted WorkerPool's autoscaler series, so the pool label cannot grow without
    bound (its queue figures stay while observe.py sees work in the pool)."""
    for gauge in (POOL_DESIRED, POOL_REPLICAS):
        with contextlib.suppress(KeyError):
            gauge.remove(pool)
    for direction in ("up", "down"):
        with contextlib.suppress(KeyError):
            POOL_DECISIONS.remove(pool, direction)


LEADER = Gauge(
    "longtask_operator_leader",
    "1 while this operator holds the leader Lease and runs the loops, 0 while it waits as a standby.",
    ["identity", "lease"],
)

LOOP_ERRORS = Counter(
    "longtask_operator_loop_errors_total",
    "Failures in the operator's background loops: kind=transient (Redis or the apiserver "
    "unavailable, a conflict; retried with backoff) or kind=bug (anything else).",
    ["loop", "kind"],
)

# -- schedules (schedules.py): one series per LongTaskSchedule ------------------------------
SCHEDULE_LAST_SUCCESS = Gauge(
    "longtask_schedule_last_success_timestamp_seconds",
    "Unix time the schedule's latest successful run finished (0: none yet).",
    ["namespace", "schedule"],
)
# Like kube-state-metrics' kube_cronjob_created: before any run succeeded, the alert
# LongTaskScheduleNotSucceeding counts from here (last success 0 would mean 1970).
SCHEDULE_CREATED = Gauge(
    "longtask_schedule_created_timestamp_seconds",
    "Unix time the schedule was created (its metadata.creationTimestamp).",
    ["namespace", "schedule"],
)
SCHEDULE_NEXT_RUN = Gauge(
    "longtask_schedule_next_run_timestamp_seconds",
    "Unix time the schedule's next run is due (0: suspended or invalid).",
    ["namespace", "schedule"],
)
SCHEDULE_INTERVAL = Gauge(
    "longtask_schedule_interval_seconds",
    "Seconds between the schedule's next two times (what the not-succeeding alert counts in).",
    ["namespace", "schedule"],
)
SCHEDULE_RUNS = Counter(
    "longtask_schedule_runs_created_total",
    "Runs the operator created for the schedule (AlreadyExists, a run created before, not counted).",
    ["namespace", "schedule"],
)
SCHEDULE_MISSED = Counter(
    "longtask_schedule_missed_runs_total",
    "Scheduled times that never ran: past startingDeadlineSeconds after an outage, or skipped by Forbid.",
    ["namespace", "schedule"],
)
