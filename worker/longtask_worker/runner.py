"""Runs one attempt of one LongTask: lease, look-up, call, and how the attempt ends.

It must not know about Celery's API (app.py adapts it) nor write Redis keys itself
(store.py does). What follows a failure is decided by longtask_contracts.failures.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from longtask_contracts import events, failures, ledger, logs, tracing
from longtask_worker import metrics, sdk, store

log = logging.getLogger(__name__)
_CANCEL_CHECK_INTERVAL = 0.25
Kind = events.Kind


@dataclass(frozen=True)
class Limits:
    lease_seconds: float = 30.0
    result_max_bytes: int = 16 * 1024
    cancel_grace_seconds: float = 30.0
    files_root: str = ""  # LONGTASK_FILES_ROOT: where tasks may read and write files


class RunContext:
    """The sdk.TaskContext of one running attempt; also renews its lease in the background
    and, once the task was cancelled and ignored it for the grace period, ends the process."""

    def __init__(
        self, *, dispatch: ledger.Dispatch, store: store.Store, worker: str, limits: Limits, tag: str = ""
    ) -> None:
        self.dispatch = dispatch
        self.tag = tag  # the delivery tag of the attempt's message (store.Store)
        self.namespace, self.name, self.uid = dispatch.namespace, dispatch.name, dispatch.uid
        self.attempt = dispatch.attempt
        self.worker = worker
        self._store = store
        self._limits = limits
        self._cancelled = False
        self._cancel_checked = 0.0
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._watch, name=f"lease-{self.uid}", daemon=True)

    def event(self, kind: Kind, **fields: Any) -> events.TaskEvent:
        return self.dispatch.event(kind, worker=self.worker, **fields)

    def progress(self, percent: float, message: str | None = None, *, step: str | None = None) -> None:
        self._store.publish(
            self.event(
                Kind.PROGRESS, progress=max(0.0, min(100.0, float(percent))), message=message, step=step
            )
        )

    def heartbeat(self) -> None:
        if not self._store.renew(
            self.dispatch, worker=self.worker, lease_seconds=self._limits.lease_seconds, tag=self.tag
        ):
            self._superseded()
        metrics.HEARTBEATS.inc()
        metrics.LAST_HEARTBEAT.set(time.time())

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

    def path(self, path: str) -> Path:
        return sdk.confine(path, self._limits.files_root)

    def open(self, path: str, mode: str = "r", *, encoding: str | None = None) -> IO[Any]:
        return sdk.open_beneath(path, self._limits.files_root, mode, encoding=encoding)

    def __enter__(self) -> RunContext:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(timeout=5)

    def _watch(self) -> None:
        """Renew the lease every third of it; enforce the cancel grace period."""
        interval = min(1.0, self._limits.lease_seconds / 3)
        last_beat, cancel_seen = time.monotonic(), None
        while not self._stop.wait(interval):
            try:
                if time.monotonic() - last_beat >= self._limits.lease_seconds / 3:
                    self.heartbeat()
                    last_beat = time.monotonic()
                if cancel_seen is None and self._store.cancel_requested(self.uid):
                    cancel_seen = time.monotonic()
                if (
                    cancel_seen is not None
                    and time.monotonic() - cancel_seen > self._limits.cancel_grace_seconds
                ):
                    self._force_cancel()
            except Exception:  # a Redis blip must not kill the task; the next beat retries
                metrics.HEARTBEAT_FAILURES.inc()
                log.warning("lease renewal of %s failed", self.uid, exc_info=True)

    def _superseded(self) -> None:
        """Another attempt of this task holds the lease: this one was declared dead (it stalled
        past its lease) and must not run on beside it."""
        log.error(
            "%s/%s attempt %s lost its lease to a newer attempt; stopping its process",
            self.namespace,
            self.name,
            self.attempt,
        )
        tracing.flush()  # os._exit skips the exporter's own flush
        os._exit(76)

    def _force_cancel(self) -> None:
        log.warning(
            "%s/%s ignored cancellation for %.0f s; stopping its process",
            self.namespace,
            self.name,
            self._limits.cancel_grace_seconds,
        )
        self._store.finish(
            dispatch=self.dispatch,
            worker=self.worker,
            event=self.event(Kind.CANCELLED, message="cancelled: stopped after the grace period"),
            tag=self.tag,
        )
        tracing.flush()  # os._exit skips the exporter's own flush
        metrics.CANCELLATIONS.labels(how="forced").inc()
        os._exit(75)  # the parent replaces this process; the redelivered message is skipped


def run(
    *, dispatch: ledger.Dispatch, store: store.Store, worker: str, limits: Limits, tag: str = ""
) -> Kind | None:
    """Run the attempt in a span `longtask.attempt` (child of the message's context) with its
    log lines about the task; returns the kind of its final event, or None if it was not (or
    no longer) ours. `tag` is its message's delivery tag ("" if unknown)."""
    d = dispatch
    attributes = tracing.task_attributes(
        namespace=d.namespace, name=d.name, uid=d.uid, attempt=d.attempt, task=d.spec.task, pool=d.spec.pool
    )
    with (
        tracing.span("longtask.attempt", attributes=attributes) as span,
        logs.task(**d.about()),
    ):
        log.info("attempt %s of %s starts on %s", d.attempt, d.spec.task, worker)
        kind = _run(dispatch=dispatch, store=store, worker=worker, limits=limits, tag=tag)
        span.set_attribute("longtask.outcome", kind.value if kind else "skipped")
        log.info("attempt %s ended: %s", d.attempt, kind.value if kind else "skipped")
        return kind


def _run(
    *, dispatch: ledger.Dispatch, store: store.Store, worker: str, limits: Limits, tag: str
) -> Kind | None:
    if not store.claim(dispatch, worker=worker, lease_seconds=limits.lease_seconds, tag=tag):
        log.info(
            "skipping %s attempt %s: done, running elsewhere, superseded, or its LongTask deleted",
            dispatch.uid,
            dispatch.attempt,
        )
        return None
    task = metrics.task_label(dispatch.spec.task)
    metrics.ATTEMPTS.labels(task=task).inc()
    metrics.HEARTBEATS.inc()  # the claim took the lease: the attempt's first heartbeat
    metrics.LAST_HEARTBEAT.set(time.time())
    metrics.BUSY_SLOTS.inc()
    began = time.monotonic()
    outcome = "error"  # unless _attempt returns: the worker's own failure (Redis down)
    try:
        kind = _attempt(dispatch=dispatch, store=store, worker=worker, limits=limits, tag=tag)
        outcome = kind.value if kind else "stale"
        return kind
    finally:
        metrics.BUSY_SLOTS.dec()
        metrics.LAST_HEARTBEAT.set(0)
        metrics.TASK_DURATION.labels(task=task, outcome=outcome).observe(time.monotonic() - began)
        if outcome == Kind.CANCELLED.value:
            metrics.CANCELLATIONS.labels(how="cooperative").inc()


def _attempt(
    *, dispatch: ledger.Dispatch, store: store.Store, worker: str, limits: Limits, tag: str
) -> Kind | None:
    """The claimed attempt, from its Started event to its end."""
    failure: Exception | None = None
    with RunContext(dispatch=dispatch, store=store, worker=worker, limits=limits, tag=tag) as ctx:
        store.publish(ctx.event(Kind.STARTED, progress=0))
        try:
            result = _call(ctx, dispatch, limits.result_max_bytes)
        except Exception as exc:  # every failure becomes the task's outcome, not the worker's
            failure = exc
    # The lease thread has stopped: no renewal can race the release below.
    if failure is not None:
        return _finish_failed(ctx, store, dispatch, failure, limits)
    if not store.finish(
        dispatch=dispatch,
        worker=worker,
        event=ctx.event(Kind.SUCCEEDED, progress=100, result=result),
        tag=tag,
    ):
        _stale(dispatch)
        return None
    return Kind.SUCCEEDED


def _call(ctx: RunContext, dispatch: ledger.Dispatch, result_max_bytes: int) -> Any:
    fn = sdk.lookup(dispatch.spec.task)
    bound = sdk.bind(fn, ctx, dispatch.spec.params)
    if ctx.cancelled:
        raise sdk.Cancelled("the LongTask was cancelled before it started")
    result = fn(*bound.args, **bound.kwargs)
    check_result(result, result_max_bytes)
    return result


def _finish_failed(
    ctx: RunContext, store: store.Store, dispatch: ledger.Dispatch, exc: Exception, limits: Limits
) -> Kind | None:
    if isinstance(exc, sdk.Cancelled):
        if not store.finish(
            dispatch=dispatch,
            worker=ctx.worker,
            event=ctx.event(Kind.CANCELLED, message=str(exc)),
            tag=ctx.tag,
        ):
            _stale(dispatch)
            return None
        return Kind.CANCELLED
    error = {"type": _error_type(exc), "message": str(exc) or repr(exc)}
    tracing.failed(exc)
    log.info("task %s/%s attempt %s failed: %s", dispatch.namespace, dispatch.name, dispatch.attempt, error)
    end = failures.after_failure(
        dispatch=dispatch,
        error=error,
        now=time.time(),
        rand=random.random(),
        worker=ctx.worker,
        permanent=isinstance(exc, sdk.PermanentError),
    )
    if not store.finish(
        dispatch=dispatch,
        worker=ctx.worker,
        event=end.event,
        retry_at=end.decision.at,
        dead_letter=end.dead_letter,
        tag=ctx.tag,
    ):
        _stale(dispatch)
        return None
    return end.kind


def _stale(dispatch: ledger.Dispatch) -> None:
    """The attempt ended after it stopped being the task's (superseded, or the operator
    ended the task meanwhile, e.g. at its deadline): nothing of it is recorded."""
    log.warning(
        "%s/%s attempt %s ended after it was superseded or the task was ended; its outcome is dropped",
        dispatch.namespace, dispatch.name, dispatch.attempt,
    )  # fmt: skip


def _is_soft_limit(exc: BaseException) -> bool:
    return type(exc).__name__ == "SoftTimeLimitExceeded"


def check_result(result: object, limit: int) -> None:
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
    return "AttemptTimeout" if _is_soft_limit(exc) else type(exc).__name__
