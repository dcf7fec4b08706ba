"""The Grafana dashboard is generated from code and its committed JSON is current.

Covers: charts/longtask/files/dashboards/longtask.json equals a fresh render of
devtools/longtask_dev/dashboard.py (grafana-foundation-sdk); every panel has a title, a
description, the `datasource` variable and PromQL that parses; the panels cover queue
depth, running, replicas vs desired, throughput, durations, failures and retries, the
DLQ, SSE and the oldest queued age, batches (items by outcome, item durations and
items queued per pool), and schedules (time since the last success against the alert's
threshold, time to the next run, runs created and missed). That each query returns data is checked against a
real Prometheus in tests/e2e/test_observability.py.
"""

from __future__ import annotations

from longtask_dev import dashboard
from tests import promql


def test_committed_dashboard_is_a_fresh_render() -> None:
    assert dashboard.main(["--check"]) == 0, "run `uv run python -m longtask_dev.dashboard`"


def test_panels_are_complete_and_their_promql_parses() -> None:
    board = promql.load_dashboard(dashboard.OUTPUT)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert board["uid"] == dashboard.UID
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    for panel in panels:
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    expressions = promql.dashboard_expressions(board)
    for item in expressions:
        assert promql.selectors(item.expr), f"{item.source}: names no metric"
    named = " ".join(item.expr for item in expressions)
    for metric in (
        "longtask_pool_queued",
        "longtask_pool_running",
        "longtask_pool_replicas",
        "longtask_pool_desired_replicas",
        "longtask_pool_oldest_queued_age_seconds",
        "longtask_worker_task_duration_seconds_count",
        "longtask_worker_task_duration_seconds_bucket",
        'outcome="retrying"',
        "longtask_dlq_depth",
        "longtask_dlq_added_total",
        "longtask_api_sse_streams",
        "longtask_worker_items_total",
        "longtask_worker_item_duration_seconds_bucket",
        "longtask_pool_items_queued",
        "longtask_schedule_last_success_timestamp_seconds",
        "longtask_schedule_next_run_timestamp_seconds",
        "longtask_schedule_interval_seconds",
        "longtask_schedule_runs_created_total",
        "longtask_schedule_missed_runs_total",
    ):
        assert metric in named, f"no panel shows {metric}"
