"""The CLI in a real pseudo-terminal (pty) and in pipes: bar, exit codes, get, list, logs.

Covers: `submit --watch` on a terminal draws a live rich progress bar that reaches 100%
and exits 0 on Succeeded, 1 on Failed, 3 on Cancelled (cancelled from another client while
it watches); piped, the same command prints plain lines without escape codes; `get` shows
phase, attempts and result; `list` filters by phase and by task; `logs` prints the event
log in order; `-n` picks the namespace; `--help` documents the exit codes.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import httpx
import pytest

from tests import helpers

pytestmark = pytest.mark.cluster


def _argv(platform, *args: str) -> list[str]:
    return [sys.executable, "-m", "longtask_cli", *args, "--api", platform.api_url]


def _in_pty(argv: list[str], *, while_running=None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Run `argv` with a pty (120x30) as its terminal; its exit code and everything it drew.

    `while_running()` is called repeatedly while it runs (e.g. to cancel its task)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "CI")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            if while_running is not None and proc.poll() is None:
                while_running()
            if proc.poll() is not None and not ready:
                break
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_bar_renders_in_a_terminal_and_success_exits_0(platform, namespace):
    argv = _argv(platform, "submit", "demo.sleep", "-p", "seconds=2", "-p", "steps=4", "-n", namespace, "-w")
    code, screen = _in_pty(argv)
    assert code == 0, screen[-2000:]
    assert "━" in screen and "100%" in screen and "Succeeded" in screen, screen[-2000:]
    assert "\x1b[" in screen  # drawn with terminal control codes, redrawn in place
    assert f"created {namespace}/" in screen


def test_failure_exits_1_in_a_terminal(platform, namespace):
    argv = _argv(platform, "submit", "demo.fail", "-p", "permanent=true", "-n", namespace, "--watch")
    code, screen = _in_pty(argv)
    assert code == 1 and "Failed" in screen, screen[-2000:]


def test_cancelled_while_watching_exits_3(platform, namespace):
    name = "cancel-me"
    task = f"{platform.api_url}/v1/namespaces/{namespace}/tasks/{name}"
    state = {"cancelled": False}

    def cancel_once_running() -> None:
        if state["cancelled"]:
            return
        got = httpx.get(task)
        if got.status_code == 200 and got.json()["status"].get("phase") == "Running":
            assert httpx.post(f"{task}/cancel").status_code == 202
            state["cancelled"] = True

    argv = _argv(
        platform,
        "submit",
        "demo.sleep",
        "-p",
        "seconds=60",
        "-p",
        "steps=60",
        "--name",
        name,
        "-n",
        namespace,
        "-w",
    )
    code, screen = _in_pty(argv, while_running=cancel_once_running)
    assert state["cancelled"] and code == 3 and "Cancelled" in screen, screen[-2000:]


def test_piped_output_is_plain_lines_and_get_list_logs(platform, namespace):
    run = lambda *a: subprocess.run(_argv(platform, *a), capture_output=True, text=True, check=False)  # noqa: E731
    out = run(
        "submit",
        "demo.sleep",
        "-p",
        "seconds=0.4",
        "-p",
        "steps=2",
        "--name",
        "ok-one",
        "-n",
        namespace,
        "-w",
    )
    assert out.returncode == 0 and "\x1b[" not in out.stdout and "━" not in out.stdout
    assert out.stdout.splitlines()[-1].split()[1] == "Succeeded"
    assert (
        run(
            "submit", "demo.fail", "-p", "permanent=true", "--name", "bad-one", "-n", namespace, "-w"
        ).returncode
        == 1
    )

    got = helpers.poll(
        lambda: (out := run("get", "ok-one", "-n", namespace)).stdout.count("Succeeded") and out,
        timeout=30,
        what="Succeeded status",
    )
    assert (
        got.returncode == 0
        and "Succeeded" in got.stdout
        and "100%" in got.stdout
        and '"steps": 2' in got.stdout
    )
    helpers.poll(  # the status is coalesced: it may trail the stream's terminal event a little
        lambda: "Failed" in run("get", "bad-one", "-n", namespace).stdout, timeout=30, what="Failed status"
    )
    listed = run("list", "-n", namespace, "--phase", "Failed")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["bad-one"]
    listed = run("list", "-n", namespace, "--task", "demo.sleep")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["ok-one"]
    logs = run("logs", "ok-one", "-n", namespace)
    phases = [line.split()[1] for line in logs.stdout.splitlines()]
    assert phases == ["Queued", "Running", "Running", "Running", "Succeeded"], logs.stdout
    assert run("get", "nothing", "-n", namespace).returncode == 1
    helpers.poll(lambda: "exit codes" in run("watch", "--help").stdout, timeout=5, what="help")
