"""The benchmarks still run: tiny runs of bench/dispatch.py and bench/autoscale.py print
every section.

Covers: the dispatch bench starts its own platform and raw Celery worker, measures both
arms, and stops cleanly; the autoscale bench runs one burst through a WorkerPool and one
through a scale patched by hand; its depth-read arm fills a Redis of its own and
times both reads. They assert no timing (this machine is shared): only that
figures appear.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from longtask_dev import binaries

pytestmark = pytest.mark.cluster


def _bench(script: str, *args: str, state: Path) -> str:
    """Run bench/<script> with `args`; its stdout (the report), after it exited 0."""
    out = subprocess.run(
        [sys.executable, str(binaries.REPO_ROOT / "bench" / script), *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_dispatch_bench_runs(tmp_path):
    small = ("--samples", "10", "--submit", "64", "--tasks", "10", "--burst", "20", "--scale", "60")
    report = _bench("dispatch.py", *small, "--restart", "5", state=tmp_path / "state")
    for section in (
        "Dispatch latency",
        "Submit latency",
        "Burst of 20",
        "ratio longtask/raw",
        "Scale:",
        "Targets",
    ):
        assert section in report, report
    assert "Operator handler errors: none" in report


def test_autoscale_bench_runs(tmp_path):
    report = _bench("autoscale.py", "--bursts", "1", "--burst-size", "2", state=tmp_path / "state")
    for section in ("backlog -> scale patch", "first task on a new pod", "pod start", "KEDA", "Target"):
        assert section in report, report


def test_autoscale_depth_read_bench_runs(tmp_path):
    small = ("--in-flight", "200", "--params-kib", "4", "--pools", "2", "--reads", "5")
    report = _bench("autoscale.py", "--depth-read", *small, state=tmp_path / "state")
    for section in ("Depth read (200 messages", "workload.read", "baseline, HVALS body scan", "Target"):
        assert section in report, report


def test_autoscale_bench_counts_apiserver_requests(tmp_path):
    report = _bench("autoscale.py", "--requests", "--requests-window", "6", state=tmp_path / "state")
    for section in ("Apiserver requests per minute", "idle pool: reads", "busy pool: reads", "Target"):
        assert section in report, report
