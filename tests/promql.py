"""Checks that PromQL of the dashboard and the alerting rules returns data from a Prometheus.

A panel's query must return at least one series. An alert's expression is usually empty
while nothing is wrong (`x > 900`), so for alerts every series selector it names (every
metric, with its matchers) must return data, and the whole expression must evaluate
without error. Grafana's variables are replaced by plain values first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import yaml

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


@dataclass(frozen=True)
class Expression:
    source: str  # "panel <title>" or "alert <name>"
    expr: str
    must_return_data: bool  # panels: the expression itself; alerts: only its selectors


def dashboard_expressions(dashboard: dict[str, Any]) -> list[Expression]:
    found = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets") or []:
            found.append(Expression(f"panel {panel['title']!r}", target["expr"], True))
    return found


def rule_expressions(path: Path) -> list[Expression]:
    rules = [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    return [Expression(f"alert {r.get('alert') or r.get('record')}", str(r["expr"]), False) for r in rules]


def plain(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def selectors(expr: str) -> list[str]:
    """Every series selector in `expr`, e.g. `up{job="longtask-operator"}`."""
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(str(node))

    promql_parser.walk(promql_parser.parse(plain(expr)), visit)
    return found


def query(prometheus: str, expr: str) -> list[Any]:
    """The result of an instant query; raises with Prometheus' error if it fails."""
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    if answer.get("status") != "success":
        raise ValueError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
    result: list[Any] = answer["data"]["result"]
    return result


def problems(prometheus: str, expressions: list[Expression]) -> list[str]:
    """What returns no data (or fails), one line each; empty when everything has data."""
    found = []
    for item in expressions:
        expr = plain(item.expr)
        try:
            result = query(prometheus, expr)
            if item.must_return_data and not result:
                found.append(f"{item.source}: no data from {expr}")
            for selector in selectors(expr):
                if not query(prometheus, selector):
                    found.append(f"{item.source}: no data from {selector}")
        except ValueError as exc:
            found.append(f"{item.source}: {exc}")
    return found


def load_dashboard(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board
