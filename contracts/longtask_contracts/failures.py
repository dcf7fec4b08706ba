"""What follows an attempt that ended badly, for the worker and the operator alike; pure.

An attempt fails in one of three ways: a permanent error (fail now), a retryable error
(retry with backoff, or give up), or a crash (the worker died: the operator saw its lease
run out; poison after too many in a row). after_failure() turns one such end into the
decision, the event that reports it and the dead-letter record, if any. It must not do
I/O: the caller writes the result (worker: store.finish; operator: the lease transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

from longtask_contracts import events, ledger, retry


@dataclass(frozen=True)
class AttemptEnd:
    """How a failed attempt ends: what was decided and what to write about it."""

    decision: retry.Decision
    kind: events.Kind  # RETRYING or FAILED
    event: events.TaskEvent
    dead_letter: ledger.DeadLetter | None  # set when the task goes to the dead-letter queue


def after_failure(
    *,
    dispatch: ledger.Dispatch,
    error: dict[str, str],
    now: float,
    rand: float,
    worker: str | None,
    permanent: bool = False,
    crashes: int = 0,
    poison_crashes: int = 3,
) -> AttemptEnd:
    """The end of `dispatch`'s attempt, which failed at `now` with `error` ({type, message}).

    `rand` is uniform in [0, 1) (the backoff's jitter); `permanent`: the task said it can
    never succeed; `crashes`: worker deaths in a row, this one included (0 for an error the
    task raised); `worker`: who reports it (None: the operator)."""
    decision = retry.decide(
        policy=dispatch.spec.retry,
        attempt=dispatch.attempt,
        now=now,
        deadline=dispatch.deadline,
        rand=rand,
        permanent=permanent,
        crashes=crashes,
        poison_crashes=poison_crashes,
    )
    if decision.outcome is retry.Outcome.RETRY:
        event = dispatch.event(
            events.Kind.RETRYING, worker=worker, error=error, retry_at=decision.at, message=error["message"]
        )
        return AttemptEnd(decision=decision, kind=events.Kind.RETRYING, event=event, dead_letter=None)
    if decision.reason == "DeadlineExceeded":
        error = {
            "type": "DeadlineExceeded",
            "message": f"timeoutSeconds ({dispatch.spec.timeout_seconds}) leaves no time for "
            f"another attempt; last error: {error['type']}: {error['message']}",
        }
    dead = None
    if decision.outcome is retry.Outcome.DEAD_LETTER:
        dead = ledger.DeadLetter(
            namespace=dispatch.namespace,
            name=dispatch.name,
            uid=dispatch.uid,
            task=dispatch.spec.task,
            spec=dispatch.spec.to_k8s(),
            attempts=dispatch.attempt,
            reason=decision.reason,
            error=error,
        )
    event = dispatch.event(
        events.Kind.FAILED, worker=worker, error=error, dead_lettered=dead is not None or None
    )
    return AttemptEnd(decision=decision, kind=events.Kind.FAILED, event=event, dead_letter=dead)
