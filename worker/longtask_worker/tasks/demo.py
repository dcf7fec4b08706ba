"""Demo tasks for trying longtask and for its tests: sleep with progress, fail, crash, no-op, echo."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from longtask_worker import sdk


@sdk.task("demo.sleep")
def sleep(
    ctx: sdk.TaskContext, *, seconds: float = 5, steps: int = 10, cooperative: bool = True
) -> dict[str, float]:
    """Sleep `seconds` in `steps` equal steps, reporting progress after each step.

    With cooperative=false it ignores cancellation, like a task stuck in a long call.
    """
    if seconds < 0 or steps < 1:
        raise sdk.PermanentError("seconds must be >= 0 and steps >= 1")
    began = time.monotonic()
    for i in range(steps):
        if cooperative:
            ctx.check_cancelled()
        time.sleep(seconds / steps)
        ctx.progress(100 * (i + 1) / steps, f"step {i + 1} of {steps}", step=f"{i + 1}/{steps}")
    return {"slept": round(time.monotonic() - began, 3), "steps": steps}


@sdk.task("demo.noop")
def noop(ctx: sdk.TaskContext) -> None:
    """Do nothing: measures the platform's own overhead."""


@sdk.task("demo.fail")
def fail(
    ctx: sdk.TaskContext, *, permanent: bool = False, message: str = "demo failure", message_bytes: int = 0
) -> None:
    """Raise a permanent error (no retry helps) or a retryable one.

    With message_bytes, the progress message and the error are padded to that size, like
    a task that puts a whole document or traceback in them.
    """
    if message_bytes:
        message = (message + " ") * (message_bytes // (len(message) + 1) + 1)
        ctx.progress(50, message[:message_bytes])
    if permanent:
        raise sdk.PermanentError(message[: message_bytes or None])
    raise sdk.RetryableError(message[: message_bytes or None])


@sdk.task("demo.crash")
def crash(ctx: sdk.TaskContext, *, unless_exists: str | None = None) -> str:
    """Kill the worker process running this task, as a segfault or OOM kill would.

    If the file `unless_exists` exists, succeed instead: creating it stands for a fix.
    """
    if unless_exists and os.path.exists(unless_exists):
        return "fixed"
    ctx.progress(1, "about to crash the worker process")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@sdk.task("demo.echo")
def echo(ctx: sdk.TaskContext, *, value: Any = None, seconds: float = 0, fail: bool = False) -> Any:
    """Return `value` after `seconds` (checking for cancellation), or fail for good if `fail`:
    a batch whose items each say what they do."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ctx.check_cancelled()
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
    if fail:
        raise sdk.PermanentError(f"item asked to fail (value {value!r})")
    return value
