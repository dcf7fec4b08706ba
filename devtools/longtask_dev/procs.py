"""Starts and stops local child processes that die with their parent; no Kubernetes here.

Every child gets PR_SET_PDEATHSIG=SIGKILL, so a SIGKILLed parent leaves no orphans, and
its own session, so a terminal's Ctrl-C reaches only the parent, which then stops the
children in order.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessError(RuntimeError):
    """A child process exited early or never became ready."""


@dataclass
class Child:
    """One supervised child process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Signal the child, wait up to `timeout` seconds, then SIGKILL it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def restart(self, *, timeout: float = 10.0) -> Child:
        """Stop gracefully (SIGTERM), then start again with the same command and log."""
        self.stop(timeout=timeout)
        return self.start()

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        self.stop(timeout=0.0, sig=signal.SIGKILL)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    child: Child | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `check` until it is true; fail early with the child's log if the child exits."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if child is not None and not child.alive():
            raise ProcessError(f"{child.name} exited before {what}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{child.log_tail()}" if child is not None else ""
            raise ProcessError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
        time.sleep(interval)


def http_ok(url: str, *, token: str | None = None, context: ssl.SSLContext | None = None) -> bool:
    """True if GET `url` answers 200 within two seconds."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False
