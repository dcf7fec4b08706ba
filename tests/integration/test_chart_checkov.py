"""Checkov (pinned, 3.3.30) finds nothing to fail in the rendered chart.

Covers: the chart rendered with its defaults, and with every optional object on (PodMonitors,
PrometheusRule, dashboard ConfigMap), an external Redis with Sentinels, and images by
digest, scanned by checkov's Kubernetes checks: no failed check; every check the chart skips
(checkov.io/skip annotations, each with its reason) is listed in the chart README's table
"Checkov", and the README lists no check the chart does not skip. hack/test.sh fetches the
pinned checkov into uv's cache first, so that this runs offline from then on.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from longtask_dev import binaries

CHART = binaries.REPO_ROOT / "charts" / "longtask"
CHECKOV = ("uv", "tool", "run", "--from", "checkov==3.3.30", "checkov")
DIGEST = "sha256:" + "0" * 64
VALUE_SETS = {
    "default": {},
    "everything": {
        "metrics": {
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboards": {"enabled": True},
        },
        "redis": {
            "enabled": False,
            "external": {"url": "rediss://:pw@redis.example:6380/0", "sentinels": ["s1:26379", "s2:26379"]},
        },
        "image": {"digest": DIGEST},
        "test": {"image": {"digest": DIGEST}},
    },
}


def _render(helm: Path, values: dict[str, object], tmp_path: Path, name: str) -> Path:
    values_path = tmp_path / f"{name}-values.yaml"
    values_path.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [str(helm), "template", "lt", str(CHART), "--namespace", "jobs", "-f", str(values_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    folder = tmp_path / "rendered"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(out)
    return folder


def _readme_skips() -> set[str]:
    text = (CHART / "README.md").read_text()
    section = text.split("## Checkov", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(CKV2?_K8S_\d+)` \|", section, flags=re.MULTILINE))


def test_checkov_passes_on_the_rendered_chart(go_tool: Callable[[str], Path], tmp_path: Path):
    assert shutil.which("uv"), "checkov runs through `uv tool run` (hack/test.sh caches it)"
    helm = go_tool("helm")
    for name, values in VALUE_SETS.items():
        folder = _render(helm, values, tmp_path, name)
    result = subprocess.run(
        [*CHECKOV, "-d", str(folder), "--framework", "kubernetes", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        (c["check_id"], c["resource"], c["file_path"]) for r in reports for c in r["results"]["failed_checks"]
    ]
    assert failed == [], f"checkov failed checks: {failed}"
    assert result.returncode == 0, result.stderr[-2000:]
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert all(r["summary"]["passed"] > 400 for r in reports), "checkov checked the manifests"
    assert skipped == _readme_skips(), "the README's table lists exactly the checks the chart skips"
