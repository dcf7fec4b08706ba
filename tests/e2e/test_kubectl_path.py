"""The path of one task, driven with kubectl only.

Covers: `kubectl apply` of the example runs to Succeeded with progress 100; `kubectl get
lt` shows Task, Phase, Progress as NN%, Attempts; `kubectl wait` on the phase returns;
a task that succeeds gets no Event for its routine phases (Queued, Running, Succeeded);
an unknown task name fails the LongTask with a clear error and a Warning Event `Failed`
that `kubectl describe` shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from longtask_dev import binaries
from tests import helpers

pytestmark = pytest.mark.cluster
EXAMPLE = binaries.REPO_ROOT / "examples" / "sleep.yaml"


def _short_example(tmp_path: Path) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["params"] = {"seconds": 1, "steps": 4}
    path = tmp_path / "sleep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_applied_example_runs_to_succeeded(platform, kubectl, namespace, tmp_path):
    kubectl("apply", "-n", namespace, "-f", str(_short_example(tmp_path)))
    kubectl(
        "wait", "-n", namespace, "lt/sleep-demo", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=60s"
    )
    status = json.loads(kubectl("get", "-n", namespace, "lt/sleep-demo", "-o", "json").stdout)["status"]
    assert status["progress"] == 100
    assert status["attempts"] == 1
    assert status["result"]["steps"] == 4
    assert status["startedAt"] <= status["finishedAt"]

    table = kubectl("get", "lt", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "TASK", "PHASE", "PROGRESS", "ATTEMPTS"]
    assert table[1].split()[:5] == ["sleep-demo", "demo.sleep", "Succeeded", "100%", "1"]

    kubectl("wait", "-n", namespace, "lt/sleep-demo", "--for=condition=Succeeded", "--timeout=5s")
    # The sync posts a phase's Event when it folds the phase in, before the status that
    # shows it is written: by now any Event of this task's phases would be there.
    reasons = {e["reason"] for e in _events(kubectl, namespace, "sleep-demo")}
    assert not reasons & {"Queued", "Running", "Succeeded"}, reasons


def test_unknown_task_name_fails_clearly(platform, kubectl, namespace):
    lt = {
        "apiVersion": "longtask.io/v1alpha1",
        "kind": "LongTask",
        "metadata": {"name": "typo"},
        "spec": {"task": "demo.sleeep"},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(lt))
    kubectl("wait", "-n", namespace, "lt/typo", "--for=jsonpath={.status.phase}=Failed", "--timeout=60s")
    status = json.loads(kubectl("get", "-n", namespace, "lt/typo", "-o", "json").stdout)["status"]
    assert status["error"]["type"] == "UnknownTask"
    assert "demo.sleeep" in status["error"]["message"] and "demo.sleep" in status["error"]["message"]
    failed = helpers.poll(
        lambda: [e for e in _events(kubectl, namespace, "typo") if e["reason"] == "Failed"],
        timeout=10,
        what="the Failed Event",
    )
    assert failed[0]["type"] == "Warning" and "UnknownTask" in failed[0]["message"]
    described = kubectl("describe", "-n", namespace, "lt/typo").stdout
    assert "UnknownTask" in described.rpartition("Events:")[2], described


def _events(kubectl, namespace: str, name: str) -> list[dict]:
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return list(json.loads(out.stdout)["items"])
