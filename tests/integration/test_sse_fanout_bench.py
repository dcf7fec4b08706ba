"""The SSE fan-out bench still runs: a tiny run of bench/sse_fanout.py prints every section.

Covers: it starts its own cluster and gateway, runs the gateway arm and the direct-XREAD
baseline with a few watchers, reports latency, the ratio, memory per watcher and the target,
and no watcher missed an event. No timing is asserted (this machine is shared).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from longtask_dev import binaries

pytestmark = pytest.mark.cluster


def test_sse_fanout_bench_runs(tmp_path):
    script = binaries.REPO_ROOT / "bench" / "sse_fanout.py"
    args = ["--watchers", "4", "--tasks", "2", "--events", "3", "--interval", "0.1", "--timeout", "60"]
    out = subprocess.run(
        [sys.executable, str(script), *args, "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for section in (
        "gateway (shared reader)",
        "direct XREAD",
        "ratio gateway/direct",
        "per watcher",
        "Target",
    ):
        assert section in out.stdout, out.stdout
    rows = [
        line.split() for line in out.stdout.splitlines() if line.startswith(("gateway (", "direct XREAD"))
    ]
    assert [row[-3:-1] for row in rows] == [["16", "0"], ["16", "0"]], out.stdout  # events, errors
