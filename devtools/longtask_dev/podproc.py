"""One container as a local process: how the node agent starts it, and the shim that runs first.

The agent starts `python -m longtask_dev.podproc SPEC.json` (the shim). The shim enters a
private mount, UTS (hostname = pod name) and PID namespace, bind-mounts the pod's volumes,
its /etc/hosts and its service-account token, then forks the namespace's init, which forks
and execs the container's command. The network is the host's (loopback Redis and apiserver
stay reachable). When the shim dies the init dies (PR_SET_PDEATHSIG) and the kernel kills
every process of the namespace, so a SIGKILLed agent leaves nothing behind. It must not
talk to Kubernetes and imports only the standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWPID = 0x00020000, 0x04000000, 0x20000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """Runs in the forked child: SIGKILL it when the thread that started it ends."""
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """A running container: the shim's Popen (its pid is the containerID)."""

    def __init__(self, *, spec: dict[str, Any], spec_path: Path, log_path: Path, python: str) -> None:
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)  # it holds the container's environment, secrets included
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            # PR_SET_PDEATHSIG fires when the *thread* that forked ends: the pod worker thread
            # that calls this outlives its processes (it reaps them before it returns).
            self.popen = subprocess.Popen(
                [python, "-m", "longtask_dev.podproc", str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": spec["env"].get("PATH", os.defpath)},
                cwd="/",
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """None while running; else the container's exit code (128 + N when killed by signal N)."""
        code = self.popen.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def signal(self, sig: int) -> None:
        """SIGTERM reaches the command through the shim and the init; SIGKILL ends the namespace."""
        try:
            if sig == signal.SIGKILL:
                os.killpg(self.popen.pid, sig)
            else:
                os.kill(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        self.popen.wait()


# -- inside: the shim and the namespace's init ------------------------------------------------


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int) -> None:
    result = libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, None)
    _call(result, f"mount {target}")


def _enter_namespaces(libc: ctypes.CDLL, spec: dict[str, Any]) -> None:
    _call(libc.unshare(_CLONE_NEWNS | _CLONE_NEWUTS | _CLONE_NEWPID), "unshare")
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing leaks back to the host
    # Open every source first: a mount over /tmp must not hide a source that lives under /tmp.
    sources = [(os.open(m["source"], os.O_PATH), m) for m in spec["mounts"]]
    kept = [(os.open(path, os.O_PATH), path) for path in spec.get("keep", []) if os.path.isdir(path)]
    for fd, m in sources:
        _mount(libc, f"/proc/self/fd/{fd}", m["target"], None, _MS_BIND | _MS_REC)
        if m.get("readOnly"):
            _mount(libc, None, m["target"], None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
        os.close(fd)
    targets = [os.path.join(m["target"], "") for m in spec["mounts"]]
    for fd, path in kept:  # bring back host folders a volume hid (see podworker: "keep")
        if any(os.path.join(path, "").startswith(target) for target in targets):
            os.makedirs(path, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    hostname = spec["hostname"].encode()
    _call(libc.sethostname(hostname, len(hostname)), "sethostname")


def _exec_command(spec: dict[str, Any]) -> None:
    """Runs in the command's process: default signal dispositions, then exec (never returns)."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, *_FORWARDED):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.chdir(spec["workingDir"])
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as exc:
        print(f"longtask node: cannot run {spec['argv'][0]!r}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)


def _forward_and_wait(child: int) -> int:
    """Forward the usual signals to `child`, reap everything, return `child`'s exit code."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _init(libc: ctypes.CDLL, spec: dict[str, Any]) -> None:
    """PID 1 of the pod's namespace: an init that forwards signals (as tini does)."""
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    try:  # a /proc that shows this namespace's processes only
        _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except OSError as exc:
        print(f"longtask node: /proc not remounted: {exc}", file=sys.stderr, flush=True)
    child = os.fork()
    if child == 0:
        _exec_command(spec)
    code = _forward_and_wait(child)
    sys.stdout.flush()
    os._exit(code)  # the kernel kills what is left in the namespace


def main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    libc = _libc()
    try:
        _enter_namespaces(libc, spec)
    except OSError as exc:
        print(f"longtask node: {exc}", file=sys.stderr, flush=True)
        return 128
    init = os.fork()
    if init == 0:
        _init(libc, spec)
    return _forward_and_wait(init)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
