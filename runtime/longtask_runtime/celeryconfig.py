"""longtask's Celery settings, one source for the workers and the operator that sends to
them; it configures a Celery app object and opens no connection.

Each setting chosen for tasks that run minutes to hours:
- JSON only (never pickle); no result backend: results travel as events.
- acks_late + reject_on_worker_lost: a message is acknowledged only after its attempt
  ended, so a worker that dies mid-task hands the message back instead of losing it.
- prefetch 1: a busy worker does not hoard queued tasks that an idle one could run.
- a long visibility timeout: liveness comes from the workers' leases, not from Redis
  redelivering "slow" messages (celery#5935).
- one kombu list per LongTask priority (names.PRIORITY_STEPS), served most urgent first.
"""

from __future__ import annotations

from celery import Celery

from longtask_contracts import names

VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600
RESTORE_INTERVAL_SECONDS = 60


def configure(
    app: Celery,
    *,
    redis_url: str,
    pool: str = "default",
    concurrency: int = 2,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    restore_interval_seconds: int = RESTORE_INTERVAL_SECONDS,
) -> None:
    app.conf.update(
        broker_url=redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_seconds,
            "unacked_restore_interval": restore_interval_seconds,
            "unacked_restore_throttle": 1,  # the interval alone sets the sweep period
            "socket_connect_timeout": 5,
            "queue_order_strategy": "priority",
            "priority_steps": names.PRIORITY_STEPS,  # one list per LongTask priority
        },
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=concurrency,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        task_default_queue=names.queue(pool),
        broker_heartbeat=0,
        worker_enable_remote_control=False,
    )
