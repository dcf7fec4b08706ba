"""The Celery app, configured for long work, and the one Celery task that runs LongTasks.

Settings, each chosen for tasks that run minutes to hours:
- JSON only (never pickle); no result backend: results travel as events.
- acks_late + reject_on_worker_lost: a message is acknowledged only after its attempt
  ended, so a worker that dies mid-task hands the message back instead of losing it.
- prefetch 1: a busy worker does not hoard queued tasks that an idle one could run.
- a long visibility timeout: liveness comes from the lease in runner.py, not from Redis
  redelivering "slow" messages (celery#5935).

It must not hold task logic: runner.py runs attempts, sdk.py registers tasks.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from typing import Any

from celery import Celery, Task

from longtask_contracts import ledger, names
from longtask_worker import runner, settings, store

log = logging.getLogger(__name__)


def configure(app: Celery, cfg: settings.WorkerSettings) -> None:
    """Apply longtask's Celery settings (shared by the worker and the operator's sender)."""
    app.conf.update(
        broker_url=cfg.redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": cfg.visibility_timeout_seconds,
            "unacked_restore_interval": cfg.restore_interval_seconds,
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
        worker_concurrency=cfg.concurrency,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        task_default_queue=names.queue(cfg.pool),
        broker_heartbeat=0,
        worker_enable_remote_control=False,
    )


_stores: dict[int, store.Store] = {}


def _store(cfg: settings.WorkerSettings) -> store.Store:
    """One Redis client per process (prefork children must not share the parent's sockets)."""
    pid = os.getpid()
    if pid not in _stores:
        _stores[pid] = store.Store(store.connect(cfg.redis_url), pod=cfg.pod_name)
    return _stores[pid]


def load_task_modules(cfg: settings.WorkerSettings) -> None:
    """Import the modules the worker was given (and only those): they register its tasks."""
    for module in cfg.module_list():
        importlib.import_module(module)
    if not cfg.module_list():
        log.warning("no task modules given (--tasks / LONGTASK_TASK_MODULES): this worker serves no task")


def create_app(cfg: settings.WorkerSettings | None = None) -> Celery:
    cfg = cfg or settings.get_settings()
    app = Celery("longtask")
    configure(app, cfg)
    load_task_modules(cfg)

    limits = runner.Limits(
        lease_seconds=cfg.lease_seconds,
        result_max_bytes=cfg.result_max_bytes,
        cancel_grace_seconds=cfg.cancel_grace_seconds,
        files_root=cfg.files_root,
    )

    @app.task(name=names.RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_longtask(self: Task[Any, Any], dispatch: dict[str, Any]) -> str | None:
        worker = f"{self.request.hostname or socket.gethostname()}/{os.getpid()}"
        kind = runner.run(
            dispatch=ledger.Dispatch.model_validate(dispatch), store=_store(cfg), worker=worker, limits=limits
        )
        return kind.value if kind else None

    return app
