"""examples/nightly-refresh.yaml applies as it is, and a run of it refreshes a knowledge base.

Covers:
- the apiserver accepts the example (`kubectl apply --dry-run=server`, the CRD's schema),
  and refuses a copy with a concurrencyPolicy or a name the schema forbids;
- applied, `kubectl get lts` shows it with the columns Schedule, Suspend, Active, Last
  Schedule and Age (`-o wide` adds Next);
- its first run: a LongTask made from the schedule's template as the gateway's trigger
  makes one (owned by the schedule, labelled longtask.io/schedule, the template's labels
  and spec), run by a worker of the example's pool whose files root holds the folder,
  ends Succeeded with every document of the folder embedded into the output file.
  It creates the run itself rather than waiting for 02:00 Berlin time, so it needs no
  schedule controller; the controller's own runs are tested in tests/e2e/test_schedules.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtask_contracts import names
from longtask_dev import binaries
from longtask_dev import platform as platform_mod
from tests import lt

pytestmark = pytest.mark.cluster
EXAMPLE = binaries.REPO_ROOT / "examples" / "nightly-refresh.yaml"
DOCUMENTS = {
    "leases.txt": "A running attempt holds a lease that its worker renews; a dead worker's lease runs out.",
    "retries.txt": "A failed attempt is retried with exponential backoff until its retries run out.",
    "schedules.txt": "A LongTaskSchedule creates one LongTask per scheduled time, named from that time.",
}


def _example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return doc


def test_the_example_applies_and_the_schema_refuses_what_it_can_tell(
    platform: platform_mod.Platform, kubectl: Any, namespace: str
) -> None:
    """(The platform has applied the chart's CRDs.)"""
    dry = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLE))
    assert "longtaskschedule.longtask.io/nightly-refresh created (server dry run)" in dry.stdout
    bad_policy = _example()
    bad_policy["spec"]["concurrencyPolicy"] = "Sometimes"
    long_name = _example()
    long_name["metadata"]["name"] = "n" * 53  # its runs' names add "-" and 10 digits
    for doc, says in ((bad_policy, "spec.concurrencyPolicy"), (long_name, "metadata.name")):
        refused = kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
        )
        assert refused.returncode != 0 and says in refused.stderr, refused.stderr

    kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    table = kubectl("get", "lts", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert table[1].split()[:7] == ["nightly-refresh", "0", "2", "*", "*", "*", "false"]
    wide = kubectl("get", "lts", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "NEXT"


def _run_from_template(kubectl: Any, namespace: str, schedule: dict[str, Any]) -> str:
    """Create a run now the way the gateway's trigger does: the template's labels and spec,
    the schedule's label and owner reference. Returns the run's name."""
    name = schedule["metadata"]["name"]
    template = schedule["spec"]["template"]
    labels = {**template.get("metadata", {}).get("labels", {}), names.SCHEDULE_LABEL: name}
    run = f"{name}-manual-{int(time.time())}"
    owner = {
        "apiVersion": names.API_VERSION,
        "kind": names.SCHEDULE_KIND,
        "name": name,
        "uid": schedule["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {
            "name": run,
            "labels": labels,
            "annotations": template.get("metadata", {}).get("annotations", {}),
            "ownerReferences": [owner],
        },
        "spec": template["spec"],
    }
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    return run


def test_a_run_of_the_example_embeds_the_folder(
    platform: platform_mod.Platform, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    folder = tmp_path / "knowledge-base"
    folder.mkdir()
    for file, text in DOCUMENTS.items():
        (folder / file).write_text(text)
    (folder / "notes.md").write_text("not a .txt file: not embedded")
    pool = _example()["spec"]["template"]["spec"]["pool"]
    worker = platform.start_worker(
        pool=pool, tasks="longtask_worker.tasks.docs", extra_env={"LONGTASK_FILES_ROOT": str(tmp_path)}
    )
    try:
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
        schedule = json.loads(kubectl("get", "lts", "nightly-refresh", "-n", namespace, "-o", "json").stdout)
        run = _run_from_template(kubectl, namespace, schedule)
        status = lt.wait_phase(kubectl, namespace, run, "Succeeded", timeout=120)
    finally:
        platform.stop_child(worker)

    obj = lt.get(kubectl, namespace, run)
    assert obj["metadata"]["labels"][names.SCHEDULE_LABEL] == "nightly-refresh"
    assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "knowledge-base"
    assert obj["metadata"]["ownerReferences"][0]["uid"] == schedule["metadata"]["uid"]
    result = status["result"]
    assert result["documents"] == len(DOCUMENTS), result
    lines = [json.loads(line) for line in (tmp_path / "knowledge-base.jsonl").read_text().splitlines()]
    assert {line["doc"] for line in lines} == set(DOCUMENTS)
    assert len(lines) == result["chunks"] and all(len(line["vector"]) == 256 for line in lines)
