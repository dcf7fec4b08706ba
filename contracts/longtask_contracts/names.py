"""Every Kubernetes name, Redis key, queue and Celery task name longtask uses; no I/O here.

Keeping them in one module means a reader can see the whole Redis layout at a glance, and
a rename cannot leave one component talking to a key the others no longer use.
"""

from __future__ import annotations

# -- Kubernetes ---------------------------------------------------------------
GROUP = "longtask.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LongTask"
PLURAL = "longtasks"
POOL_KIND = "WorkerPool"
POOL_PLURAL = "workerpools"
SCHEDULE_KIND = "LongTaskSchedule"
SCHEDULE_PLURAL = "longtaskschedules"
SCHEDULE_LABEL = f"{GROUP}/schedule"  # on every run: the name of the schedule that made it
SCHEDULED_AT_ANNOTATION = f"{GROUP}/scheduled-at"  # on every run: its scheduled time (RFC 3339)
# On a run made by hand (the gateway's trigger), "manual", as CronJob's
# cronjob.kubernetes.io/instantiate: such a run has no scheduled time (no scheduled-at).
INSTANTIATE_ANNOTATION = f"{GROUP}/instantiate"
# The ReplicaSet controller removes the pods with the lowest cost first (Kubernetes >= 1.22).
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Kopf keeps its handler progress and diff-base under this prefix. It is not GROUP
# because Kopf ignores annotations under its own prefix, and REPLAY_ANNOTATION must count.
KOPF_PREFIX = f"kopf.{GROUP}"
REPLAY_ANNOTATION = f"{GROUP}/replay"  # set (any new value) to replay a dead-lettered task
# The gateway writes the W3C trace context of a create as longtask.io/traceparent (and
# /tracestate); the operator's dispatch spans continue that trace (tracing.py).
TRACE_ANNOTATION_PREFIX = f"{GROUP}/"
# A LongTask the gateway created for a request with an Idempotency-Key carries the key's
# digest (scoped by caller and namespace) and the request body's fingerprint, so a retry
# that finds the object can tell whether it is its own (api/longtask_api/idempotency.py).
IDEMPOTENCY_ANNOTATION = f"{GROUP}/idempotency-key"
FINGERPRINT_ANNOTATION = f"{GROUP}/request-fingerprint"
MANAGER = "longtask-operator"  # field manager and Event source component

# -- Celery ---------------------------------------------------------------------
RUN_TASK = "longtask.run"  # the one Celery task; it looks the user task up by name.
RUN_ITEMS = "longtask.items"  # a lane of a batch: runs its items one after another (batch.py)
QUEUE_PREFIX = "longtask."
ITEMS_QUEUE_SUFFIX = ".items"


def queue(pool: str) -> str:
    """The Celery queue that the workers of `pool` consume."""
    return f"{QUEUE_PREFIX}{pool}"


def items_queue(pool: str) -> str:
    """The queue of the pool's batch lanes. Workers consume it after queue(pool): kombu asks
    Redis for the most urgent priority first and, within one priority, for the queues in
    the order the worker names them, so a lane waits behind every task of its priority
    (a batch never holds up a single task) and ahead of every lower one."""
    return f"{queue(pool)}{ITEMS_QUEUE_SUFFIX}"


# kombu's Redis transport keeps one list per priority step and serves the LOWEST step
# first. LongTask priorities run 0..9 with 9 first, so each gets its own step, reversed.
PRIORITY_STEPS = list(range(10))
_KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_UNACKED = "unacked"  # kombu's hash: delivery tag -> [message, exchange, routing key]
KOMBU_UNACKED_INDEX = "unacked_index"  # kombu's zset: delivery tag -> when it was fetched


def transport_priority(priority: int) -> int:
    """The kombu priority of a LongTask priority (9 = most urgent = kombu's 0)."""
    return max(PRIORITY_STEPS) - priority


def queue_lists(pool: str, *, items: bool = False) -> list[str]:
    """Every Redis list of the pool's queue (or of its lanes' queue), one per priority step,
    most urgent first."""
    base = items_queue(pool) if items else queue(pool)
    return [f"{base}{_KOMBU_PRIORITY_SEP}{step}" if step else base for step in PRIORITY_STEPS]


# A header of every message the operator sends: when it was queued (unix time), so the
# operator can tell the age of the oldest message waiting in each pool (observe.py).
QUEUED_AT_HEADER = "longtask_queued_at"


def celery_task_id(uid: str, attempt: int) -> str:
    """Deterministic Celery task id: the same attempt of the same LongTask has one id."""
    return f"{uid}.{attempt}"


def lane_task_id(uid: str, lane: int, seq: int) -> str:
    """The Celery task id of a lane's token: no '.', so nothing takes it for an attempt."""
    return f"{uid}~{lane}~{seq}"


def parse_lane_task_id(task_id: str) -> tuple[str, int, int] | None:
    """(uid, lane, seq) of a lane token's task id; None for anything else."""
    parts = task_id.split("~")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


# -- Redis ------------------------------------------------------------------------
KEY_PREFIX = "longtask:"
STATUS_STREAM = f"{KEY_PREFIX}status"  # every task's events, read by the operator
STATUS_GROUP = "operator"  # consumer group on STATUS_STREAM
# Hash uid -> the folded state of a task whose status cannot be written or read for now,
# stored when its status-stream entries are acknowledged without a write (statusheld.py).
STATUS_HELD = f"{KEY_PREFIX}status-held"
# The status stream is never capped on XADD: only the operator trims it, below the oldest
# entry its group has not acknowledged, so no unread terminal event can be lost.
TASK_STREAM_MAXLEN = 10_000  # approximate cap of one task's SSE history


def events_stream(uid: str) -> str:
    """One task's event stream: every event, read by SSE clients (ids are SSE ids)."""
    return f"{KEY_PREFIX}events:{uid}"


def dispatch_guard(uid: str) -> str:
    """Taken (SET NX) by whoever sends a LongTask's first attempt: "sending", then "sent"."""
    return f"{KEY_PREFIX}dispatched:{uid}"


def replayed(uid: str) -> str:
    """The value of the replay annotation the operator last acted on (each new value replays once)."""
    return f"{KEY_PREFIX}replayed:{uid}"


def synced(uid: str) -> str:
    """Set by the status sync once it acknowledged entries of the task (statussync.py)."""
    return f"{KEY_PREFIX}synced:{uid}"


def expiring(uid: str) -> str:
    """'namespace/name' of a finished task with a TTL: what its expiry deletes (set with its
    names.EXPIRY entry, so a task never sent, which has no `current`, is deleted too)."""
    return f"{KEY_PREFIX}expiring:{uid}"


def claim(uid: str) -> str:
    """The lease a worker holds while it runs an attempt; value 'attempt:worker'."""
    return f"{KEY_PREFIX}claim:{uid}"


def done(uid: str) -> str:
    """Set when a task reached a terminal phase on a worker; redeliveries then do nothing."""
    return f"{KEY_PREFIX}done:{uid}"


def cancel_flag(uid: str) -> str:
    """Set while a LongTask's spec.cancel is true; workers poll it cooperatively."""
    return f"{KEY_PREFIX}cancel:{uid}"


def tombstone(uid: str) -> str:
    """Set when a LongTask's keys are forgotten (its object is gone): while it exists, no
    send writes the task's current attempt again and no worker claims one (ledger.py)."""
    return f"{KEY_PREFIX}deleted:{uid}"


def current(uid: str) -> str:
    """The Dispatch (JSON) of the latest attempt sent or scheduled: what a retry re-sends."""
    return f"{KEY_PREFIX}current:{uid}"


def started(uid: str) -> str:
    """The highest attempt number a worker has started; older deliveries are skipped."""
    return f"{KEY_PREFIX}started:{uid}"


def crashes(uid: str) -> str:
    """Attempts in a row whose worker died (lease expired); poison detection counts these."""
    return f"{KEY_PREFIX}crashes:{uid}"


# Sorted sets scanned by the operator's maintenance loop; member uid, score a unix time.
LEASES = f"{KEY_PREFIX}leases"  # when each running attempt's lease runs out
SCHEDULE = f"{KEY_PREFIX}schedule"  # when each retrying task's next attempt is due
DEADLINES = f"{KEY_PREFIX}deadlines"  # when each unfinished task's whole deadline passes
EXPIRY = f"{KEY_PREFIX}expiry"  # when each finished task's ttlSecondsAfterFinished runs out
ZSETS = (LEASES, SCHEDULE, DEADLINES, EXPIRY)
DLQ = f"{KEY_PREFIX}dlq"  # hash uid -> dead-letter record (JSON)
# Hash uid -> "pool pod tag" of every claimed attempt: its pool, the pod that runs it, and
# the delivery tag of the message it came in (ledger.Claim). Written only by the claim and
# renew scripts and removed only by ledger.queue_release, which keep busy(pool) in step.
RUNNING = f"{KEY_PREFIX}running"
# Hash delivery tag -> "pool uid attempt pod": the worker's record of each message it took
# from a queue (ledger.Delivery), so the operator can tell what a kombu `unacked` entry is
# without reading its body. Dropped with the message (ledger.queue_drop_delivery).
DELIVERIES = f"{KEY_PREFIX}deliveries"


def fetched(pool: str) -> str:
    """Sorted set of the pool's messages fetched by a worker and not claimed yet: delivery
    tag -> when it was fetched (the autoscaler counts those fetched within the claim timeout)."""
    return f"{KEY_PREFIX}fetched:{pool}"


def busy(pool: str) -> str:
    """Hash pod -> how many of the pool's attempts it holds (names.RUNNING entries of the pool,
    counted by pod): the pool's running attempts and busy pods in one small read."""
    return f"{KEY_PREFIX}busy:{pool}"


# The run_id of the Redis server the operator last saw (redisrepair.py), never expiring: missing,
# or naming another server, means Redis restarted, failed over or lost data since.
REDIS_IDENTITY = f"{KEY_PREFIX}redis-identity"


# -- batches (batch.py; the scripts that change these are in batchledger.py) --------------


def batch(uid: str) -> str:
    """Hash of a batch's counters and settings (batch.Field names)."""
    return f"{KEY_PREFIX}batch:{uid}"


def items_inputs(uid: str) -> str:
    """Hash index -> the item's JSON object, as given."""
    return f"{KEY_PREFIX}items:{uid}"


def items_records(uid: str) -> str:
    """Hash index -> batch.ItemRecord (JSON) of every item that ran or is held by a lane."""
    return f"{KEY_PREFIX}item-records:{uid}"


def items_retry(uid: str) -> str:
    """Sorted set index -> when the item's next attempt is due (items waiting to retry)."""
    return f"{KEY_PREFIX}item-retries:{uid}"


def items_failed(uid: str) -> str:
    """Sorted set index -> index of the items that failed for good."""
    return f"{KEY_PREFIX}item-failures:{uid}"


def lanes(uid: str) -> str:
    """Hash lane -> batch.Lane (its token's seq, state, pod, message tag, items held)."""
    return f"{KEY_PREFIX}lanes:{uid}"


def items_beat(uid: str) -> str:
    """Taken (SET NX PX) by a lane that publishes the batch's counts: at most one such event
    per batch.REPORT_EVERY_SECONDS, whatever the number of lanes."""
    return f"{KEY_PREFIX}items-beat:{uid}"


def upload(upload_id: str) -> str:
    """Items the gateway stored for a batch it is creating (as items_inputs); renamed to the
    batch's items_inputs when it starts, expires if it never does."""
    return f"{KEY_PREFIX}upload:{upload_id}"


def pool_items(pool: str) -> str:
    """Hash uid -> the batch's queued items the pool could start now (at most its free lanes):
    what the autoscaler counts as queued work for batches (workload.py)."""
    return f"{KEY_PREFIX}pool-items:{pool}"


LANE_LEASES = f"{KEY_PREFIX}lane-leases"  # "uid/lane" -> when the running lane's lease runs out
LANE_SENDS = f"{KEY_PREFIX}lane-sends"  # "uid/lane" -> when to send its token again if not sent
BATCH_WAKE = f"{KEY_PREFIX}batch-wake"  # uid -> when the operator looks at the batch again


def lane_member(uid: str, lane: int) -> str:
    """A lane's member in LANE_LEASES / LANE_SENDS and its key in RUNNING."""
    return f"{uid}/{lane}"


# Hash task name -> tasktypes.TaskType (JSON): each worker writes the signatures of the
# tasks it serves when it starts, so the gateway can offer them without importing worker code.
TASK_TYPES = f"{KEY_PREFIX}tasktypes"


def idempotency(digest: str) -> str:
    """The gateway's record of one Idempotency-Key (its scoped digest): the body's fingerprint
    and the task created, kept LONGTASK_IDEMPOTENCY_SECONDS after the create."""
    return f"{KEY_PREFIX}idempotency:{digest}"


def gateway_wake(instance: str) -> str:
    """A tiny stream one gateway process adds to so its shared reader's blocking XREAD
    returns and picks up streams that gained their first watcher (expires when unused)."""
    return f"{KEY_PREFIX}gateway-wake:{instance}"


def task_keys(uid: str) -> list[str]:
    """All per-task string/stream keys, for garbage collection when a LongTask goes away."""
    return [
        events_stream(uid),
        dispatch_guard(uid),
        claim(uid),
        done(uid),
        cancel_flag(uid),
        current(uid),
        started(uid),
        crashes(uid),
        replayed(uid),
        synced(uid),
        expiring(uid),
        batch(uid),
        items_inputs(uid),
        items_records(uid),
        items_retry(uid),
        items_failed(uid),
        lanes(uid),
        items_beat(uid),
    ]
