"""The dashboard and the alerting rules name only metrics the components define.

Covers: every series selector of every dashboard panel and every alert names a metric
that the operator, the worker or the gateway defines (in their metrics modules, with the
suffixes Prometheus adds: `_total`, `_bucket`, `_count`, `_sum`), or `up`; so a renamed
metric fails here, before a real Prometheus (tests/e2e/test_observability.py) finds the
panel empty. The batch metrics the engine reports are among them, and the schedule
metrics LongTaskScheduleNotSucceeding reads, labelled by namespace and schedule.
"""

from __future__ import annotations

import re
from types import ModuleType

from prometheus_client import Counter, Gauge, Histogram

from longtask_api import metrics as api_metrics
from longtask_dev import binaries, dashboard
from longtask_operator import metrics as operator_metrics
from longtask_worker import metrics as worker_metrics
from tests import promql

RULES = binaries.REPO_ROOT / "charts" / "longtask" / "files" / "alerts" / "longtask.rules.yaml"


def exported(*modules: ModuleType) -> set[str]:
    """The series names the metrics of `modules` export."""
    names = {"up"}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Counter):
                names.add(f"{value._name}_total")
            elif isinstance(value, Histogram):
                names.update(f"{value._name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            elif isinstance(value, Gauge):
                names.add(value._name)
    return names


def test_every_panel_and_alert_names_a_defined_metric() -> None:
    known = exported(api_metrics, operator_metrics, worker_metrics)
    expressions = promql.dashboard_expressions(promql.load_dashboard(dashboard.OUTPUT))
    expressions += promql.rule_expressions(RULES)
    for item in expressions:
        for selector in promql.selectors(item.expr):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", selector)
            assert name and name.group(0) in known, f"{item.source}: {selector} is not a defined metric"


def test_the_batch_metrics_have_the_names_the_engine_reports() -> None:
    known = exported(operator_metrics, worker_metrics)
    for name in (
        "longtask_worker_items_total",
        "longtask_worker_item_duration_seconds_bucket",
        "longtask_pool_items_queued",
    ):
        assert name in known, name
    assert worker_metrics.ITEMS._labelnames == ("task", "outcome")
    assert worker_metrics.ITEM_DURATION._labelnames == ("task",)
    assert operator_metrics.POOL_ITEMS_QUEUED._labelnames == ("pool",)


def test_the_schedule_metrics_have_the_names_and_labels_the_alert_reads() -> None:
    known = exported(operator_metrics)
    for name in (
        "longtask_schedule_last_success_timestamp_seconds",
        "longtask_schedule_created_timestamp_seconds",
        "longtask_schedule_next_run_timestamp_seconds",
        "longtask_schedule_interval_seconds",
        "longtask_schedule_runs_created_total",
        "longtask_schedule_missed_runs_total",
    ):
        assert name in known, name
    for metric in (
        operator_metrics.SCHEDULE_LAST_SUCCESS,
        operator_metrics.SCHEDULE_CREATED,
        operator_metrics.SCHEDULE_NEXT_RUN,
        operator_metrics.SCHEDULE_INTERVAL,
        operator_metrics.SCHEDULE_RUNS,
        operator_metrics.SCHEDULE_MISSED,
    ):
        assert metric._labelnames == ("namespace", "schedule"), metric
