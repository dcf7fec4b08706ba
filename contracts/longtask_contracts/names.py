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
QUEUE_PREFIX = "longtask."


def queue(pool: str) -> str:
    """The Celery queue that the workers of `pool` consume."""
    return f"{QUEUE_PREFIX}{pool}"


# kombu's Redis transport keeps one list per priority step and serves the LOWEST step
# first. LongTask priorities run 0..9 with 9 first, so each gets its own step, reversed.
PRIORITY_STEPS = list(range(10))
_KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_UNACKED = "unacked"  # kombu's hash: delivery tag -> [message, exchange, routing key]
KOMBU_UNACKED_INDEX = "unacked_index"  # kombu's zset: delivery tag -> when it was fetched


def transport_priority(priority: int) -> int:
    """The kombu priority of a LongTask priority (9 = most urgent = kombu's 0)."""
    return max(PRIORITY_STEPS) - priority


def queue_lists(pool: str) -> list[str]:
    """Every Redis list of the pool's queue, one per priority step, most urgent first."""
    base = queue(pool)
    return [f"{base}{_KOMBU_PRIORITY_SEP}{step}" if step else base for step in PRIORITY_STEPS]


# A header of every message the operator sends: when it was queued (unix time), so the
# operator can tell the age of the oldest message waiting in each pool (observe.py).
QUEUED_AT_HEADER = "longtask_queued_at"


def celery_task_id(uid: str, attempt: int) -> str:
    """Deterministic Celery task id: the same attempt of the same LongTask has one id."""
    return f"{uid}.{attempt}"


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
    ]
