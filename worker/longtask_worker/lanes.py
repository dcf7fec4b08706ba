"""Runs one lane of a batch: claim it, take items a chunk at a time, run each as an attempt of
its own, report each chunk's outcomes, and leave the worker to others when it should.

An item's attempt has the task's retry policy (per item), a time limit (attemptTimeoutSeconds,
never past the item's deadline: timeoutSeconds after its first attempt started), the lane's
lease (renewed in the background while any item runs) and the batch's cancellation. What
follows a failure is decided by longtask_contracts.retry, as for a task. A lane leaves its
worker (parks) when nothing is ready (idle: the operator wakes it when retries come due),
when the batch stops, when a task of its priority or above waits in the pool's main queue
(after the current chunk: a batch never holds a task up for longer than a chunk, about
batch.CHUNK_SECONDS of work), and every batch.SLICE_SECONDS (so other batches' lanes get
their turn); then it sends its next token itself.

It must not know about Celery's API (app.py adapts it, `send_token` sends a token) nor write
Redis keys itself (lanestore.py does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from longtask_contracts import batch, batchledger, events, ledger, logs, retry, tracing
from longtask_worker import lanestore, metrics, runner, sdk

log = logging.getLogger(__name__)
Kind = events.Kind
# An item that does not stop this long after its time limit (it caught AttemptTimeout and
# went on) has its process stopped, as Celery's hard limit stops a task's.
HARD_LIMIT_GRACE_SECONDS = 30
SendToken = Callable[[ledger.Dispatch, int, int], None]  # (dispatch, lane, seq)


class AttemptTimeout(Exception):
    """An item's attempt ran past its time limit (the error type items report)."""


class ItemContext:
    """The sdk.TaskContext of one item's attempt (`index`, `item`: which item, as given)."""

    def __init__(self, lane: Lane, *, index: int, attempt: int, item: dict[str, Any]) -> None:
        self._lane = lane
        d = lane.store.dispatch
        self.namespace, self.name, self.uid = d.namespace, d.name, d.uid
        self.attempt, self.index, self.item = attempt, index, item

    def progress(self, percent: float, message: str | None = None, *, step: str | None = None) -> None:
        """An item's own progress is not published (a batch reports its counts)."""

    def heartbeat(self) -> None:
        self._lane.renew()

    @property
    def cancelled(self) -> bool:
        return self._lane.cancelled

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise sdk.Cancelled("the LongTask was cancelled")

    def path(self, path: str) -> Path:
        return sdk.confine(path, self._lane.limits.files_root)

    def open(self, path: str, mode: str = "r", *, encoding: str | None = None) -> IO[Any]:
        return sdk.open_beneath(path, self._lane.limits.files_root, mode, encoding=encoding)


class Lane:
    def __init__(self, *, store: lanestore.LaneStore, worker: str, limits: runner.Limits) -> None:
        self.store = store
        self.worker = worker
        self.limits = limits
        self._cancelled = False
        self._cancel_checked = 0.0
        self._stop = threading.Event()
        self._item_began: float | None = None  # monotonic start of the running item
        self._item_limit = 0.0
        self._ran = False  # the current item's function was called
        self._beat = threading.Thread(target=self._watch, name=f"lane-{store.uid}-{store.lane}", daemon=True)
        task = metrics.task_label(store.dispatch.spec.task)
        self._ended = {  # item attempts by outcome (docs/metrics.md), one labelled child each
            code: metrics.ITEMS.labels(task=task, outcome=outcome)
            for code, outcome in (("s", "succeeded"), ("f", "failed"), ("r", "retried"), ("q", "cancelled"))
        }
        self._duration = metrics.ITEM_DURATION.labels(task=task)

    @property
    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_checked >= 0.25:
            self._cancel_checked = now
            self._cancelled = self.store.cancel_requested()
        return self._cancelled

    def renew(self) -> None:
        if not self.store.renew(lease_seconds=self.limits.lease_seconds):
            self._lost()

    def _watch(self) -> None:
        """Renew the lease every third of it; stop the process if an item overstays its hard
        limit or ignores cancellation past the grace period (its items then return to the
        queue through the operator, as a crash)."""
        interval = min(1.0, self.limits.lease_seconds / 3)
        last_beat, cancel_seen = time.monotonic(), None
        while not self._stop.wait(interval):
            try:
                now = time.monotonic()
                if now - last_beat >= self.limits.lease_seconds / 3:
                    self.renew()
                    last_beat = now
                began = self._item_began
                if began is not None and now - began > self._item_limit + HARD_LIMIT_GRACE_SECONDS:
                    self._exit("an item ran past its time limit and did not stop", 77)
                if cancel_seen is None and self.store.cancel_requested():
                    cancel_seen = now
                if (
                    cancel_seen is not None
                    and began is not None
                    and now - cancel_seen > self.limits.cancel_grace_seconds
                ):
                    self._exit("an item ignored cancellation past the grace period", 75)
            except Exception:  # a Redis blip must not kill the lane; the next beat retries
                log.warning("lease renewal of lane %s failed", self.store.lane, exc_info=True)

    def _lost(self) -> None:
        self._exit("the lane lost its lease (declared lost by the operator)", 76)

    def _exit(self, why: str, code: int) -> None:
        log.error("%s/%s lane %s: %s; stopping its process", self.store.dispatch.namespace,
                  self.store.dispatch.name, self.store.lane, why)  # fmt: skip
        tracing.flush()
        os._exit(code)

    def __enter__(self) -> Lane:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(timeout=5)

    # -- the loop ---------------------------------------------------------------------
    def run(self, send_token: SendToken) -> str:
        """Take, run and report chunks until the lane parks; what it did ("idle", "yield", ...)."""
        began, per_item, first = time.monotonic(), None, True
        while True:
            taken = self.store.take(batch.chunk_size(per_item), yield_to_tasks=not first)
            first = False
            if taken == -1:
                return "lost"
            if isinstance(taken, int):
                return self._park(
                    send_token, again=taken == -2, why={0: "idle", -2: "yield", -3: "stop"}[taken]
                )
            chunk_began = time.monotonic()
            outcomes = [self._counted(t) for t in taken]
            report = self.store.report(outcomes, lease_seconds=self.limits.lease_seconds)
            if report is None:
                return "lost"  # the operator ended this lane's items meanwhile: nothing recorded
            self._published(report, outcomes)
            ran = [o for o in outcomes if o.code != "q"]
            if ran:
                per_item = (time.monotonic() - chunk_began) / len(ran)
            if time.monotonic() - began > batch.SLICE_SECONDS:
                return self._park(send_token, again=True, why="slice")

    def _park(self, send_token: SendToken, *, again: bool, why: str) -> str:
        seq = self.store.park(again=again)
        if seq is not None:
            send_token(self.store.dispatch, self.store.lane, seq)
            self.store.mark_sent()
        return why

    def _published(self, report: batchledger.Report, outcomes: list[batchledger.Outcome]) -> None:
        """The batch's counts, when the script says it is time (rate-limited, or items failed)."""
        failed = [
            {"index": o.index, "error": o.record.error}
            for o in outcomes
            if o.code == "f" and o.record is not None and o.record.error
        ][: batch.EVENT_FAILURES_MAX]
        if not (report.publish or failed):
            return
        c = report.counts
        self.store.publish(
            self.store.dispatch.event(
                Kind.PROGRESS,
                worker=self.worker,
                progress=c.progress(),
                message=f"{c.ended} of {c.total} items ended ({c.failed} failed)",
                items=c.model_dump(),
                failed_items=failed or None,
            )
        )

    # -- one item ---------------------------------------------------------------------
    def _counted(self, taken: batchledger.Taken) -> batchledger.Outcome:
        """_item, counted by outcome if it ran (an item sent back unrun counts nowhere)."""
        self._ran = False
        outcome = self._item(taken)
        if self._ran:
            self._ended[outcome.code].inc()
        return outcome

    def _item(self, taken: batchledger.Taken) -> batchledger.Outcome:
        """Run one item's attempt (unless the batch is cancelled: then it goes back, unrun)."""
        if self.cancelled:
            return batchledger.Outcome(index=taken.index, code="q", record=None)
        spec = self.store.dispatch.spec
        now = round(time.time(), 3)  # milliseconds: records stay small (Redis bytes per item)
        record = taken.record or batch.ItemRecord(index=taken.index)
        attempt = record.attempts + 1
        started = record.started_at or now
        deadline = started + spec.timeout_seconds
        record = record.model_copy(
            update={"attempts": attempt, "started_at": started, "next_attempt_at": None}
        )
        if taken.item is None:
            return self._failed(
                record, {"type": "ItemMissing", "message": "the item's input is not in Redis"}, now
            )
        limit = max(1.0, min(float(spec.attempt_timeout_seconds or spec.timeout_seconds), deadline - now))
        try:
            result = self._call(taken, attempt=attempt, limit=limit)
        except sdk.Cancelled:
            return batchledger.Outcome(index=taken.index, code="q", record=None)
        except Exception as exc:  # every failure becomes the item's outcome, not the worker's
            error = {"type": type(exc).__name__, "message": str(exc) or repr(exc)}
            end = round(time.time(), 3)
            decision = retry.decide(
                policy=spec.retry,
                attempt=attempt,
                now=end,
                deadline=deadline,
                rand=random.random(),
                permanent=isinstance(exc, sdk.PermanentError),
            )
            if decision.outcome is retry.Outcome.RETRY and decision.at is not None:
                retrying = record.model_copy(
                    update={"phase": batch.ItemPhase.RETRYING, "error": error, "next_attempt_at": decision.at}
                )
                return batchledger.Outcome(index=taken.index, code="r", record=retrying, due=decision.at)
            if decision.reason == "DeadlineExceeded":
                error = {
                    "type": "DeadlineExceeded",
                    "message": f"timeoutSeconds ({spec.timeout_seconds}) leaves the item no time for another "
                    f"attempt; last error: {error['type']}: {error['message']}",
                }
            return self._failed(record, error, end)
        done = record.model_copy(
            update={
                "phase": batch.ItemPhase.SUCCEEDED,
                "result": result,
                "error": None,
                "crashes": 0,
                "finished_at": round(time.time(), 3),
            }
        )
        return batchledger.Outcome(index=taken.index, code="s", record=done)

    def _failed(self, record: batch.ItemRecord, error: dict[str, str], at: float) -> batchledger.Outcome:
        failed = record.model_copy(
            update={"phase": batch.ItemPhase.FAILED, "error": error, "finished_at": at}
        )
        return batchledger.Outcome(index=record.index, code="f", record=failed)

    def _call(self, taken: batchledger.Taken, *, attempt: int, limit: float) -> Any:
        spec = self.store.dispatch.spec
        item = taken.item or {}
        fn = sdk.lookup(spec.task)
        ctx = ItemContext(self, index=taken.index, attempt=attempt, item=item)
        bound = sdk.bind(fn, ctx, batch.merged_params(spec.params, item))
        self._item_limit = limit
        self._item_began = began = time.monotonic()
        self._ran = True
        try:
            with _time_limit(limit):
                result = fn(*bound.args, **bound.kwargs)
        finally:
            self._item_began = None
            self._duration.observe(time.monotonic() - began)
        runner.check_result(result, self.limits.result_max_bytes)
        return result


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise AttemptTimeout in the item after `seconds` (SIGALRM: the main thread only, where
    prefork runs tasks; elsewhere the lease thread's hard limit is the only one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise AttemptTimeout(f"the item's attempt ran past its time limit ({seconds:.0f} s)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(
    *,
    dispatch: ledger.Dispatch,
    lane: int,
    seq: int,
    base: Any,
    worker: str,
    limits: runner.Limits,
    tag: str,
    send_token: SendToken,
) -> str:
    """Claim the lane's token and run it (in a span `longtask.lane`); what it ended with, or
    "skipped" for a token that is stale or of a batch that is over."""
    store = lanestore.LaneStore(base, dispatch=dispatch, lane=lane, seq=seq, tag=tag)
    d = dispatch
    attributes = tracing.task_attributes(
        namespace=d.namespace, name=d.name, uid=d.uid, attempt=d.attempt, task=d.spec.task, pool=d.spec.pool
    )
    with tracing.span("longtask.lane", attributes=attributes) as span, logs.task(**d.about()):
        claimed, first = store.claim(lease_seconds=limits.lease_seconds)
        if not claimed:
            span.set_attribute("longtask.outcome", "skipped")
            return "skipped"
        if first:
            store.publish(
                d.event(Kind.STARTED, worker=worker, progress=0, message="the batch's first lane runs")
            )
        with Lane(store=store, worker=worker, limits=limits) as running:
            how = running.run(send_token)
        span.set_attribute("longtask.outcome", how)
        log.info("lane %s of %s/%s parked: %s", lane, d.namespace, d.name, how)
        return how
