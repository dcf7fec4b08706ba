"""The longtask Grafana dashboard, written as code with grafana-foundation-sdk.

`uv run python -m longtask_dev.dashboard` writes charts/longtask/files/dashboards/longtask.json
(the chart's ConfigMap embeds that file); `--check` fails if the committed file differs from
a fresh render (tests/unit/test_dashboard.py runs it). It must not talk to Grafana or
Prometheus: it only builds JSON. Every panel's PromQL is also run against a real
Prometheus under load by tests/e2e/test_observability.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog import encoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

from longtask_dev import binaries

OUTPUT = binaries.REPO_ROOT / "charts" / "longtask" / "files" / "dashboards" / "longtask.json"
UID = "longtask-overview"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"  # Grafana's window for rate(); the checker substitutes a duration


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Chart:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket[{RATE}])))"


ROWS: tuple[tuple[str, tuple[Chart, ...]], ...] = (
    (
        "Queues and pools",
        (
            Chart(
                "Queued attempts per pool",
                "Attempts waiting in each pool's queue (every priority list), plus the batch items "
                "the pool could start now.",
                "short",
                (Query("sum by (pool) (longtask_pool_queued)", "{{pool}}"),),
            ),
            Chart(
                "Running attempts per pool",
                "Attempts held by each pool's workers (leases, or fetched and not yet acknowledged).",
                "short",
                (Query("sum by (pool) (longtask_pool_running)", "{{pool}}"),),
            ),
            Chart(
                "Oldest queued attempt per pool",
                "How long each pool's oldest queued attempt has waited (alert: LongTaskBacklogTooOld).",
                "s",
                (Query("max by (pool) (longtask_pool_oldest_queued_age_seconds)", "{{pool}}"),),
            ),
            Chart(
                "Worker replicas vs desired",
                "Each WorkerPool's Deployment replicas and what the autoscaler wants.",
                "short",
                (
                    Query("sum by (pool) (longtask_pool_replicas)", "{{pool}} replicas"),
                    Query("sum by (pool) (longtask_pool_desired_replicas)", "{{pool}} desired"),
                ),
            ),
            Chart(
                "Dispatch latency (p95) per pool",
                "Seconds from an attempt being queued to a worker starting it.",
                "s",
                (Query(_quantile(0.95, "longtask_dispatch_latency_seconds", "pool"), "{{pool}}"),),
            ),
            Chart(
                "Busy worker slots",
                "Worker processes running an attempt, against the slots all workers have.",
                "short",
                (
                    Query("sum(longtask_worker_busy_slots)", "busy"),
                    Query("sum(longtask_worker_slots)", "slots"),
                ),
            ),
        ),
    ),
    (
        "Tasks",
        (
            Chart(
                "Throughput per task",
                "Attempts ended per second, by task.",
                "ops",
                (
                    Query(
                        f"sum by (task) (rate(longtask_worker_task_duration_seconds_count[{RATE}]))",
                        "{{task}}",
                    ),
                ),
            ),
            Chart(
                "Attempt duration per task (p50, p95)",
                "How long attempts run, by task.",
                "s",
                (
                    Query(_quantile(0.5, "longtask_worker_task_duration_seconds", "task"), "{{task}} p50"),
                    Query(_quantile(0.95, "longtask_worker_task_duration_seconds", "task"), "{{task}} p95"),
                ),
            ),
            Chart(
                "Failure and retry rates per task",
                "Attempts per second that failed or will be retried (alert: LongTaskFailureRatioHigh).",
                "ops",
                (
                    Query(
                        "sum by (task) (rate(longtask_worker_task_duration_seconds_count"
                        f'{{outcome=~"failed|error"}}[{RATE}]))',
                        "{{task}} failed",
                    ),
                    Query(
                        "sum by (task) (rate(longtask_worker_task_duration_seconds_count"
                        f'{{outcome="retrying"}}[{RATE}]))',
                        "{{task}} retrying",
                    ),
                ),
            ),
            Chart(
                "LongTasks by phase",
                "LongTask objects the operator sees, by phase.",
                "short",
                (Query("sum by (phase) (longtask_tasks)", "{{phase}}"),),
            ),
        ),
    ),
    (
        "Batches",
        (
            Chart(
                "Batch items ended per task",
                "Item attempts of batches ended per second, by task and outcome: succeeded, "
                "failed (for good), retried, cancelled.",
                "ops",
                (
                    Query(
                        f"sum by (task, outcome) (rate(longtask_worker_items_total[{RATE}]))",
                        "{{task}} {{outcome}}",
                    ),
                ),
            ),
            Chart(
                "Batch item failure ratio per task",
                "Share of item attempts that failed or will be retried; they count toward "
                "LongTaskFailureRatioHigh like task attempts.",
                "percentunit",
                (
                    Query(
                        "sum by (task) (rate(longtask_worker_items_total"
                        f'{{outcome=~"failed|retried"}}[{RATE}]))'
                        f" / sum by (task) (rate(longtask_worker_items_total[{RATE}]))",
                        "{{task}}",
                    ),
                ),
            ),
            Chart(
                "Batch item duration per task (p50, p95)",
                "How long one item's attempt runs, by task.",
                "s",
                (
                    Query(_quantile(0.5, "longtask_worker_item_duration_seconds", "task"), "{{task}} p50"),
                    Query(_quantile(0.95, "longtask_worker_item_duration_seconds", "task"), "{{task}} p95"),
                ),
            ),
            Chart(
                "Batch items queued per pool",
                "Items of running batches each pool could start now (waiting items, up to each "
                "batch's free lanes); the autoscaler counts them as queued work.",
                "short",
                (Query("sum by (pool) (longtask_pool_items_queued)", "{{pool}}"),),
            ),
        ),
    ),
    (
        "Schedules",
        (
            Chart(
                "Time since last success per schedule",
                "Seconds since each LongTaskSchedule's latest successful run finished, and the "
                "alert's threshold: two of its intervals (alert: LongTaskScheduleNotSucceeding). "
                "A schedule none of whose runs has succeeded yet is not drawn.",
                "s",
                (
                    Query(
                        "time() - max by (namespace, schedule) "
                        "(longtask_schedule_last_success_timestamp_seconds > 0)",
                        "{{namespace}}/{{schedule}}",
                    ),
                    Query(
                        "2 * max by (namespace, schedule) "
                        "(max_over_time(longtask_schedule_interval_seconds[1w]))",
                        "{{namespace}}/{{schedule}} threshold",
                    ),
                ),
            ),
            Chart(
                "Time to next run per schedule",
                "Seconds until each schedule's next run is due (suspended and invalid schedules "
                "are not drawn).",
                "s",
                (
                    Query(
                        "max by (namespace, schedule) "
                        "(longtask_schedule_next_run_timestamp_seconds > 0) - time()",
                        "{{namespace}}/{{schedule}}",
                    ),
                ),
            ),
            Chart(
                "Runs created per schedule",
                "Runs (LongTasks) the operator created for each schedule.",
                "short",
                (
                    Query(
                        "sum by (namespace, schedule) "
                        f"(increase(longtask_schedule_runs_created_total[{RATE}]))",
                        "{{namespace}}/{{schedule}}",
                    ),
                ),
            ),
            Chart(
                "Missed runs per schedule",
                "Scheduled times that never ran: past startingDeadlineSeconds after an operator "
                "outage, or skipped by concurrencyPolicy Forbid while a run was active.",
                "short",
                (
                    Query(
                        "sum by (namespace, schedule) "
                        f"(increase(longtask_schedule_missed_runs_total[{RATE}]))",
                        "{{namespace}}/{{schedule}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Dead letters, gateway and operator",
        (
            Chart(
                "Dead-letter queue",
                "Tasks in the dead-letter queue, and additions (alert: LongTaskDeadLetterQueueGrowing).",
                "short",
                (
                    Query("max(longtask_dlq_depth)", "depth"),
                    Query(f"sum(increase(longtask_dlq_added_total[{RATE}]))", "added"),
                ),
            ),
            Chart(
                "SSE connections and events",
                "Server-Sent Event streams open on the gateways, and events sent per second.",
                "short",
                (
                    Query("sum(longtask_api_sse_streams)", "open streams"),
                    Query(f"sum(rate(longtask_api_sse_events_total[{RATE}]))", "events/s"),
                ),
            ),
            Chart(
                "Gateway latency (p95) per route",
                "Seconds to the response headers, by route template.",
                "s",
                (Query(_quantile(0.95, "longtask_api_request_duration_seconds", "route"), "{{route}}"),),
            ),
            Chart(
                "Status sync lag",
                "Age of the oldest worker event not yet written (alert: LongTaskStatusSyncLagging).",
                "s",
                (Query("max(longtask_operator_status_sync_lag_seconds)", "lag"),),
            ),
            Chart(
                "Operator leader",
                "1 for the operator holding the leader Lease, 0 for each standby, by identity "
                "(alert: LongTaskOperatorNoLeader when none is 1 for a minute).",
                "short",
                (Query("max by (identity) (longtask_operator_leader)", "{{identity}}"),),
            ),
        ),
    ),
)


def _panel(chart: Chart, panel_id: int) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .display_mode(common_models.LegendDisplayMode.LIST)
        .placement(common_models.LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(chart.title)
        .description(chart.description)
        .unit(chart.unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .legend(legend)
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI))
    )
    for ref, query in zip("ABCDEFGH", chart.queries, strict=False):
        panel = panel.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
        )
    return panel


def build() -> models.Dashboard:
    board = (
        dashboard.Dashboard("longtask")
        .uid(UID)
        .description(
            "Queues, pools, tasks, batches, schedules, dead letters and the gateway of longtask "
            "(docs/metrics.md)."
        )
        .tags(["longtask"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )
    panel_id = 0
    for title, charts in ROWS:
        panel_id += 1
        board = board.with_row(dashboard.Row(title).id(panel_id))
        for chart in charts:
            panel_id += 1
            board = board.with_panel(_panel(chart, panel_id))
    return board.build()


def render() -> str:
    return json.dumps(build(), cls=encoder.JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed file is not a fresh render"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    fresh = render()
    if args.check:
        if not args.output.exists() or args.output.read_text() != fresh:
            print(f"{args.output} is stale: run `uv run python -m longtask_dev.dashboard`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(fresh)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
