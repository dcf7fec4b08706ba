"""The worker's metrics across prefork processes (exposition.py, prometheus-client multiprocess mode).

Covers: prepare() empties the worker's directory and is off without a port; child
processes that count and then die, one by os._exit (no shutdown signal), are summed by
the main process' collector; before a scrape the dead processes' live gauges are swept
(busy slots back to 0) while their counters and histograms keep counting; the task label
takes registered task names only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from longtask_runtime import promfiles
from longtask_worker import exposition, settings

CHILD = """
import os, sys
from longtask_worker import metrics
metrics.BUSY_SLOTS.inc()
metrics.ATTEMPTS.labels(task="other").inc()
metrics.TASK_DURATION.labels(task="other", outcome="succeeded").observe(0.2)
metrics.LAST_HEARTBEAT.set(1234.0)
if sys.argv[1] == "exit":  # ends like a task killed mid-run: no shutdown hook, gauge still 1
    os._exit(0)
metrics.BUSY_SLOTS.dec()
"""


def _sample(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_prepare_empties_the_directory_and_is_off_without_a_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import values

    # prepare() sets the variable and switches prometheus_client's value class: both are
    # restored after the test, so no other test's metrics go multiprocess.
    monkeypatch.setenv(exposition.ENV, "")
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    assert exposition.prepare(settings.WorkerSettings(metrics_port=0, metrics_dir=str(tmp_path))) is None
    stale = tmp_path / "counter_999.db"
    stale.write_text("from a previous worker")
    path = exposition.prepare(settings.WorkerSettings(metrics_port=9999, metrics_dir=str(tmp_path)))
    assert path == tmp_path and not stale.exists() and os.environ[exposition.ENV] == str(tmp_path)


def test_dead_children_are_swept_and_their_counts_kept(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for how in ("exit", "return", "exit"):
        subprocess.run([sys.executable, "-c", CHILD, how], env=env, check=True)
    assert len(list(tmp_path.glob("gauge_livesum_*.db"))) == 3

    registry = CollectorRegistry()
    registry.register(promfiles.Collector(tmp_path))
    text = generate_latest(registry).decode()

    assert not list(tmp_path.glob("gauge_live*_*.db")), "dead processes' live gauges are swept"
    assert _sample(text, "longtask_worker_busy_slots") == 0
    assert "longtask_worker_last_heartbeat_timestamp_seconds{" not in text
    assert _sample(text, 'longtask_worker_attempts_total{task="other"}') == 3
    assert _sample(text, 'longtask_worker_task_duration_seconds_count{outcome="succeeded",task="other"}') == 3


def test_task_label_is_bounded_to_registered_tasks() -> None:
    from longtask_worker import metrics, sdk

    sdk.task("metrics.test.known")(lambda ctx: None)
    assert metrics.task_label("metrics.test.known") == "metrics.test.known"
    assert metrics.task_label("typo-laden user input") == "other"
