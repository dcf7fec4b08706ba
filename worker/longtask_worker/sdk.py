"""The task SDK: register tasks by name and report progress through a TaskContext.

    from longtask_worker import sdk

    @sdk.task("docs.embed")
    def embed(ctx: sdk.TaskContext, *, paths: list[str]) -> dict:
        for i, path in enumerate(paths):
            ctx.check_cancelled()
            ...
            ctx.progress(100 * (i + 1) / len(paths), f"embedded {path}", step="embed")
        return {"files": len(paths)}

It must not know about Celery: runner.py binds a context to a Celery delivery.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

TaskFn = Callable[..., Any]
F = TypeVar("F", bound=TaskFn)

_REGISTRY: dict[str, TaskFn] = {}


class TaskError(Exception):
    """Base of the errors a task raises on purpose."""


class PermanentError(TaskError):
    """Retrying cannot help (bad input, missing document): the task fails at once."""


class RetryableError(TaskError):
    """A transient failure (rate limit, timeout upstream): the attempt may be retried."""


class Cancelled(TaskError):
    """Raised by TaskContext.check_cancelled() once the LongTask was cancelled."""


class UnknownTask(PermanentError):
    """No task of that name is registered in this worker."""


class InvalidParams(PermanentError):
    """The params do not fit the task function's signature."""


class TaskContext(Protocol):
    """What a running task can do; runner.RunContext implements it."""

    namespace: str
    name: str
    uid: str
    attempt: int

    def progress(self, percent: float, message: str | None = None, *, step: str | None = None) -> None:
        """Report progress (0-100); every call reaches the task's event stream."""

    def heartbeat(self) -> None:
        """Renew this attempt's lease now (the worker also does it in the background)."""

    @property
    def cancelled(self) -> bool:
        """True once the LongTask was cancelled; check it between units of work."""

    def check_cancelled(self) -> None:
        """Raise Cancelled if the LongTask was cancelled."""

    def path(self, path: str) -> Path:
        """`path` (from params) as a file under the worker's files root; see confine()."""


def confine(path: str, root: str) -> Path:
    """Resolve `path` inside `root` (LONGTASK_FILES_ROOT), or raise PermanentError.

    Params are user input: a task that reads or writes files must not reach outside the
    folder the worker was given. Relative paths are taken from the root; absolute ones
    must lie in it; `..` and symlinks are resolved before the check, so neither escapes.
    """
    if not root:
        raise PermanentError(
            "this worker has no files root (LONGTASK_FILES_ROOT): it refuses file paths; "
            "pass the data inline or give the worker a root"
        )
    base = Path(root).resolve()
    target = Path(os.path.join(base, path)).resolve()  # an absolute `path` replaces base
    if not target.is_relative_to(base):
        raise PermanentError(f"path {path!r} is outside the worker's files root {str(base)!r}")
    return target


def task(name: str) -> Callable[[F], F]:
    """Register `fn(ctx, **params)` under `name` (the LongTask's spec.task)."""

    def register(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"task {name!r} is registered twice ({_REGISTRY[name]!r} and {fn!r})")
        _REGISTRY[name] = fn
        return fn

    return register


def registered() -> list[str]:
    return sorted(_REGISTRY)


def lookup(name: str) -> TaskFn:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(registered()) or "none"
        raise UnknownTask(f"no task named {name!r} is registered on this worker (known: {known})") from None


def bind(fn: TaskFn, ctx: TaskContext, params: dict[str, Any]) -> inspect.BoundArguments:
    """Check params against the task's signature before running it, to fail clearly."""
    try:
        return inspect.signature(fn).bind(ctx, **params)
    except TypeError as exc:
        raise InvalidParams(f"params do not fit task: {exc}") from None
