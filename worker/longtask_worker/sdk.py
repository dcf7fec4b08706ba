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

import errno
import fcntl
import inspect
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

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
        """`path` (from params) as a path under the worker's files root; see confine().

        A check, not an opening: to read or write a file use open(), which checks and
        opens in one step."""

    def open(self, path: str, mode: str = "r", *, encoding: str | None = None) -> IO[Any]:
        """Open `path` (from params) beneath the worker's files root; see open_beneath()."""


def confine(path: str, root: str) -> Path:
    """Resolve `path` inside `root` (LONGTASK_FILES_ROOT), or raise PermanentError.

    Params are user input: a task that reads or writes files must not reach outside the
    folder the worker was given. Relative paths are taken from the root; absolute ones
    must lie in it; `..` and symlinks are resolved before the check, so neither escapes.
    A path with a NUL byte is refused too (no file system has such a name). This only
    checks: what is opened later may have changed meanwhile, so open files with
    open_beneath().
    """
    if not root:
        raise PermanentError(
            "this worker has no files root (LONGTASK_FILES_ROOT): it refuses file paths; "
            "pass the data inline or give the worker a root"
        )
    if "\0" in path:
        raise PermanentError(f"path {path!r} contains a NUL byte")
    base = Path(root).resolve()
    try:
        target = Path(os.path.join(base, path)).resolve()  # an absolute `path` replaces base
    except (OSError, RuntimeError) as exc:  # a link loop, or links changing under the resolution
        raise PermanentError(f"path {path!r} cannot be resolved: {exc}") from None
    if not target.is_relative_to(base):
        raise PermanentError(f"path {path!r} is outside the worker's files root {str(base)!r}")
    return target


# open() modes and their flags; every opening adds O_NOFOLLOW (refuse a link as the last
# component) and O_NONBLOCK (a FIFO must not hang the task: only regular files are kept).
_MODES = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}
# What an opening beneath the root that fails this way means: the path is bad, not the moment.
_BAD_PATH = {
    errno.ELOOP: "a symbolic link in the way (links are not followed while opening)",
    errno.ENOTDIR: "a part of it is not a directory (or is a link)",
    errno.ENOENT: "it does not exist",
    errno.EISDIR: "it is a directory",
    errno.ENAMETOOLONG: "it is too long",
    errno.EEXIST: "it exists already",
}


def open_beneath(path: str, root: str, mode: str = "r", *, encoding: str | None = None) -> IO[Any]:
    """Open the file `path` beneath `root`, never through a link that leaves it; else PermanentError.

    The path is resolved and checked (confine), then opened one component at a time from
    a descriptor of the root, each with O_NOFOLLOW: a directory or file swapped for a link
    after the check makes the opening fail instead of following it (the check and the
    opening are one step, as openat2's RESOLVE_BENEATH would make them). A file created
    for writing is created in the directory that was checked. Only regular files are
    opened. `mode` is r, w, a or x, with b for bytes.
    """
    flags = _MODES.get(mode.replace("b", ""))
    if flags is None or mode.count("b") > 1:
        raise ValueError(f"open mode {mode!r}: use r, w, a or x (with b for bytes)")
    target = confine(path, root)
    base = Path(root).resolve()
    parts = target.relative_to(base).parts
    if not parts:
        raise PermanentError(f"path {path!r} is the files root itself, not a file")
    fd = -1
    directory = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory
            )
            os.close(directory)
            directory = inner
        fd = os.open(
            parts[-1],
            flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
            0o666,
            dir_fd=directory,
        )
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermanentError(f"path {path!r} is not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        opened = os.fdopen(fd, mode, encoding=None if "b" in mode else (encoding or "utf-8"))
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        why = _BAD_PATH.get(exc.errno or 0)
        if why is None:
            raise  # the disk, not the path: the attempt may be retried
        raise PermanentError(f"cannot open {path!r} beneath the worker's files root: {why}") from None
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    finally:
        os.close(directory)
    return opened


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
