"""The `longtask submit` and `longtask watch` commands, through the real gateway.

Covers: submit --watch prints one line per event through to the result and exits 0 on
Succeeded, 1 on Failed (with the error); params given as KEY=VALUE are read as JSON when
they parse; watch of an unknown task says so and exits 1; a bad spec gets the gateway's
field-level reason.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.cluster


def _cli(platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longtask_cli", *args, "--api", platform.api_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_submit_and_watch_to_success(platform, namespace):
    out = _cli(
        platform,
        "submit",
        "demo.sleep",
        "-p",
        "seconds=0.4",
        "-p",
        "steps=4",
        "-n",
        namespace,
        "--name",
        "from-cli",
        "--watch",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"created {namespace}/from-cli"
    assert "Queued" in lines[1] and "Running" in lines[2]
    assert sum("Running" in line and "%" in line for line in lines) == 5  # started + 4 steps
    assert "Succeeded" in lines[-1] and '"steps": 4' in lines[-1]


def test_watch_reports_failure_and_unknown_tasks(platform, namespace):
    out = _cli(
        platform,
        "submit",
        "demo.fail",
        "-p",
        "permanent=true",
        "-p",
        "message=bad input",
        "-n",
        namespace,
        "--watch",
    )
    assert out.returncode == 1 and "Failed" in out.stdout and "bad input" in out.stdout
    out = _cli(platform, "watch", "nothing-here", "-n", namespace)
    assert out.returncode == 1 and "error 404" in out.stderr and "not found" in out.stderr
    out = _cli(platform, "submit", "Not A Task", "-n", namespace)
    assert out.returncode == 1 and "spec.task" in out.stderr
