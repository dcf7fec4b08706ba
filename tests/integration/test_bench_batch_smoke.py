"""The batch benchmark still runs: a tiny run of bench/batch.py prints every section.

Covers: bench/batch.py starts its own platform and raw Celery worker, runs each arm on
small batches (throughput against raw Celery, the batch's apiserver requests, single tasks
during a batch, a batch through the gateway big enough to be stored in Redis, a cancelled
batch) and stops cleanly. It asserts no timing (this machine is shared): only that the
figures appear, that the batches ran to their end and that the cancel arm found no item
started after the batch said Cancelled.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from longtask_dev import binaries

pytestmark = pytest.mark.cluster


def test_batch_bench_runs(tmp_path):
    small = ("--items", "300", "--fairness", "300", "--singles", "3", "--big", "1500", "--cancel", "400")
    out = subprocess.run(
        [
            sys.executable,
            str(binaries.REPO_ROOT / "bench" / "batch.py"),
            *small,
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = out.stdout
    for section in (
        "Throughput: 300 demo.noop items",
        "ratio longtask/raw",
        "Apiserver requests of the throughput batch",
        "Apiserver requests of the big batch",
        "Fairness: 3 single demo.noop tasks",
        "Big batch: 1500 demo.noop items",
        "bytes per item",
        "Cancel: a batch of 400",
        "Targets",
    ):
        assert section in report, report
    assert "warning:" not in report, report
    assert "Operator handler errors: none" in report, report
    (cancel,) = [line for line in report.splitlines() if "items started after Cancelled == 0" in line]
    assert cancel.split()[-2:] == ["0", "met"], cancel
