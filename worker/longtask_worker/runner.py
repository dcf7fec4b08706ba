"""Runs one attempt of one LongTask: lease, look-up, call, and the events around it.

It must not know about Celery's API (app.py adapts it) nor write Redis keys itself
(store.py does).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from longtask_contracts import events
from longtask_worker import sdk, store

log = logging.getLogger(__name__)
_CANCEL_CHECK_INTERVAL = 0.25


class RunContext:
    """The sdk.TaskContext of one running attempt."""

    def __init__(
        self, *, dispatch: events.Dispatch, store: store.Store, worker: str, lease_seconds: float
    ) -> None:
        self.dispatch = dispatch
        self.namespace = dispatch.namespace
        self.name = dispatch.name
        self.uid = dispatch.uid
        self.attempt = dispatch.attempt
        self.worker = worker
        self._store = store
        self._lease = lease_seconds
        self._cancelled = False
        self._cancel_checked = 0.0
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._beat_loop, name=f"heartbeat-{self.uid}", daemon=True)

    def event(self, kind: events.Kind, **fields: Any) -> str:
        return self._store.publish(
            events.TaskEvent(
                kind=kind,
                namespace=self.namespace,
                name=self.name,
                uid=self.uid,
                attempt=self.attempt,
                worker=self.worker,
                **fields,
            )
        )

    def progress(self, percent: float, message: str | None = None, *, step: str | None = None) -> None:
        self.event(
            events.Kind.PROGRESS, progress=max(0.0, min(100.0, float(percent))), message=message, step=step
        )

    def heartbeat(self) -> None:
        self._store.renew(uid=self.uid, lease_seconds=self._lease)

    @property
    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_checked >= _CANCEL_CHECK_INTERVAL:
            self._cancel_checked = now
            self._cancelled = self._store.cancel_requested(self.uid)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise sdk.Cancelled("the LongTask was cancelled")

    # -- background lease renewal -------------------------------------------------
    def __enter__(self) -> RunContext:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        self._store.release(uid=self.uid)

    def _beat_loop(self) -> None:
        while not self._stop.wait(self._lease / 3):
            try:
                self.heartbeat()
            except Exception:  # a Redis blip must not kill the task; the next beat retries
                log.warning("heartbeat of %s failed", self.uid, exc_info=True)


def run(
    *, dispatch: events.Dispatch, store: store.Store, worker: str, lease_seconds: float, result_max_bytes: int
) -> events.Kind | None:
    """Run the attempt; returns the kind of its final event, or None if it was not ours."""
    if not store.claim(
        uid=dispatch.uid, attempt=dispatch.attempt, worker=worker, lease_seconds=lease_seconds
    ):
        log.info("skipping %s attempt %s: done or running elsewhere", dispatch.uid, dispatch.attempt)
        return None
    with RunContext(dispatch=dispatch, store=store, worker=worker, lease_seconds=lease_seconds) as ctx:
        ctx.event(events.Kind.STARTED, progress=0)
        kind, fields = _outcome(ctx, dispatch, result_max_bytes)
        ctx.event(kind, **fields)
        return kind


def _outcome(
    ctx: RunContext, dispatch: events.Dispatch, result_max_bytes: int
) -> tuple[events.Kind, dict[str, Any]]:
    try:
        fn = sdk.lookup(dispatch.task)
        bound = sdk.bind(fn, ctx, dispatch.params)
        if ctx.cancelled:
            raise sdk.Cancelled("the LongTask was cancelled before it started")
        result = fn(*bound.args, **bound.kwargs)
        _check_result(result, result_max_bytes)
    except sdk.Cancelled as exc:
        return events.Kind.CANCELLED, {"message": str(exc)}
    except Exception as exc:  # every failure becomes the task's error, never the worker's
        log.info("task %s/%s failed: %r", dispatch.namespace, dispatch.name, exc)
        return events.Kind.FAILED, {"error": {"type": _error_type(exc), "message": str(exc) or repr(exc)}}
    return events.Kind.SUCCEEDED, {"progress": 100, "result": result}


def _check_result(result: object, limit: int) -> None:
    try:
        size = len(json.dumps(result))
    except (TypeError, ValueError) as exc:
        raise sdk.PermanentError(f"the task's result is not JSON: {exc}") from None
    if size > limit:
        raise sdk.PermanentError(
            f"the task's result is {size} bytes of JSON; the limit is {limit} "
            "(store large outputs elsewhere and return a reference)"
        )


def _error_type(exc: BaseException) -> str:
    name = type(exc).__name__
    return "Timeout" if name == "SoftTimeLimitExceeded" else name
