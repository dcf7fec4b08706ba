"""Users' own tasks and the shipped examples run end to end.

Covers: a worker pointed at a user package (--tasks, with PYTHONPATH) runs its task on its
own pool; the document-batch and agent-pipeline examples under examples/ run to
Succeeded with per-document and per-step progress and real results.
"""

from __future__ import annotations

import pytest
import yaml

from longtask_dev import binaries
from tests import lt

pytestmark = pytest.mark.cluster
EXAMPLES = binaries.REPO_ROOT / "examples"


def _apply(kubectl, namespace: str, name: str) -> str:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    return lt.create(kubectl, namespace, doc["metadata"]["name"], **doc["spec"])


def test_user_task_package(platform, kubectl, namespace, redis_client):
    worker = platform.start_worker(
        pool="acme", tasks="acme_tasks", extra_env={"PYTHONPATH": str(EXAMPLES / "tasks")}
    )
    try:
        uid = _apply(kubectl, namespace, "acme-wordcount.yaml")
        status = lt.wait_phase(kubectl, namespace, "acme-wordcount", "Succeeded")
    finally:
        platform.stop_child(worker)
    assert status["result"] == {"words": 16, "top": [["the", 4], ["fox", 2]]}
    assert [e.progress for e in lt.stream(redis_client, uid) if e.kind.value == "progress"] == [50, 100]


def test_document_batch_example(platform, kubectl, namespace, redis_client):
    uid = _apply(kubectl, namespace, "embed-docs.yaml")
    status = lt.wait_phase(kubectl, namespace, "embed-docs", "Succeeded")
    assert status["result"]["documents"] == 3 and status["result"]["chunks"] >= 6
    messages = [e.message for e in lt.stream(redis_client, uid) if e.kind.value == "progress"]
    assert [m.split(":")[0] for m in messages] == ["handbook.txt", "runbook.txt", "faq.txt"]


def test_agent_pipeline_example(platform, kubectl, namespace, redis_client):
    uid = _apply(kubectl, namespace, "agent-research.yaml")
    status = lt.wait_phase(kubectl, namespace, "agent-research", "Succeeded")
    steps = [e.step for e in lt.stream(redis_client, uid) if e.kind.value == "progress"]
    assert steps[0] == "plan" and "execute" in steps and steps[-1] == "summarize"
    assert "lease" in status["result"]["summary"] and len(status["result"]["queries"]) == 2
