"""The Celery app, configured for long work, and the one Celery task that runs LongTasks.

Its Celery settings are longtask_runtime.celeryconfig's (shared with the operator,
which sends the messages).

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
from longtask_runtime import celeryconfig, sending
from longtask_worker import fetches, lanes, runner, settings, store, telemetry

log = logging.getLogger(__name__)


_stores: dict[int, store.Store] = {}


def _store(cfg: settings.WorkerSettings) -> store.Store:
    """One Redis client per process (prefork children must not share the parent's sockets)."""
    pid = os.getpid()
    if pid not in _stores:
        _stores[pid] = store.Store(store.connect(cfg.redis_target()), pod=cfg.pod_name)
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
    celeryconfig.configure(
        app,
        redis_url=cfg.redis_target(),
        pool=cfg.pool,
        concurrency=cfg.concurrency,
        visibility_timeout_seconds=cfg.visibility_timeout_seconds,
        restore_interval_seconds=cfg.restore_interval_seconds,
    )
    load_task_modules(cfg)
    telemetry.connect()
    fetches.connect(lambda: _store(cfg))

    limits = runner.Limits(
        lease_seconds=cfg.lease_seconds,
        result_max_bytes=cfg.result_max_bytes,
        cancel_grace_seconds=cfg.cancel_grace_seconds,
        files_root=cfg.files_root,
    )

    @app.task(name=names.RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_longtask(self: Task[Any, Any], dispatch: dict[str, Any]) -> str | None:
        worker = f"{self.request.hostname or socket.gethostname()}/{os.getpid()}"
        tag = str((self.request.properties or {}).get("delivery_tag") or "")  # kombu's, of this message
        kind = runner.run(
            dispatch=ledger.Dispatch.model_validate(dispatch),
            store=_store(cfg),
            worker=worker,
            limits=limits,
            tag=tag,
        )
        return kind.value if kind else None

    @app.task(name=names.RUN_ITEMS, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_lane(self: Task[Any, Any], dispatch: dict[str, Any], lane: int, seq: int) -> str:
        worker = f"{self.request.hostname or socket.gethostname()}/{os.getpid()}"
        tag = str((self.request.properties or {}).get("delivery_tag") or "")
        return lanes.run(
            dispatch=ledger.Dispatch.model_validate(dispatch),
            lane=lane,
            seq=seq,
            base=_store(cfg),
            worker=worker,
            limits=limits,
            tag=tag,
            send_token=lambda d, n, s: sending.send_tokens(app, d, [(n, s)]),
        )

    return app
