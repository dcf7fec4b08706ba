"""The alerting rules (charts/longtask/files/alerts/longtask.rules.yaml) are valid and tested.

Covers: `promtool check rules` accepts the file; `promtool test rules` passes
tests/alerts/longtask.test.yaml; that file has, for every alert, a case where it fires
and one where it does not; every alert carries severity, summary, description and a
runbook_url whose anchor is a section of docs/runbook.md; docs/metrics.md names every
alert, and names no alert the rules do not have.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtask_contracts import names
from longtask_dev import binaries

ROOT = binaries.REPO_ROOT
RULES = ROOT / "charts" / "longtask" / "files" / "alerts" / "longtask.rules.yaml"
TESTS = ROOT / "tests" / "alerts" / "longtask.test.yaml"


@pytest.fixture(scope="module")
def promtool(go_tool: Callable[[str], Path]) -> Path:
    return go_tool("promtool")


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the markdown headings (lower case, punctuation dropped)."""
    return {
        re.sub(r"[^a-z0-9 -]", "", title.strip().lower()).replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", markdown, re.M)
    }


def test_promtool_checks_the_rules(promtool: Path) -> None:
    out = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    out = subprocess.run([promtool, "test", "rules", TESTS], capture_output=True, text=True, cwd=TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        mine = [c for c in cases if c["alertname"] == alert["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{alert['alert']} is never tested firing"
        assert any(not c["exp_alerts"] for c in mine), f"{alert['alert']} is never tested not firing"


def test_every_alert_is_documented_with_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    metrics_doc = (ROOT / "docs" / "metrics.md").read_text()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        for key in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(key), f"{name} has no {key}"
        url = alert["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("/docs/runbook.md"), url
        assert url.split("#")[1] in anchors(runbook), f"{url}: no such section in docs/runbook.md"
        assert name in metrics_doc, f"docs/metrics.md does not list {name}"
    # A word like an alert's name: LongTask followed by more (the kind LongTaskSchedule is not one).
    named = set(re.findall(r"\bLongTask[A-Z]\w+", metrics_doc + runbook)) - {names.SCHEDULE_KIND}
    assert named <= {a["alert"] for a in alerts()}, f"docs name alerts that do not exist: {named}"
