"""Users' own tasks and the shipped examples run end to end.

Covers: a worker pointed at a user package (--tasks, with PYTHONPATH) runs its task on its
own pool; the document-batch and agent-pipeline examples under examples/ run to
Succeeded with per-document and per-step progress and real results; the 100-document
batch example (one item per document) ends Succeeded with 100 items succeeded, each with
its own record and per-document result.
"""

from __future__ import annotations

import pytest
import yaml

from longtask_contracts import batch, names
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


def test_document_batch_example_one_item_per_document(platform, kubectl, namespace, redis_client):
    doc = yaml.safe_load((EXAMPLES / "embed-docs-batch.yaml").read_text())
    assert len(doc["spec"]["items"]) == 100
    uid = _apply(kubectl, namespace, "embed-docs-batch.yaml")
    status = lt.wait_phase(kubectl, namespace, "embed-docs-batch", "Succeeded", timeout=120)
    items = status["items"]
    assert (items["total"], items["succeeded"], items["failed"]) == (100, 100, 0), items
    assert not items.get("failedIndexes")
    raw = redis_client.hgetall(names.items_records(uid))
    records = sorted((batch.ItemRecord.model_validate_json(v) for v in raw.values()), key=lambda r: r.index)
    assert [r.index for r in records] == list(range(100))
    for record, item in zip(records, doc["spec"]["items"], strict=True):
        assert record.phase is batch.ItemPhase.SUCCEEDED and record.attempts == 1, record
        assert record.result["name"] == item["name"] and record.result["dims"] == 64, record
        assert record.result["words"] == len(item["text"].split()) and record.result["chunks"] >= 1, record


def test_agent_pipeline_example(platform, kubectl, namespace, redis_client):
    uid = _apply(kubectl, namespace, "agent-research.yaml")
    status = lt.wait_phase(kubectl, namespace, "agent-research", "Succeeded")
    steps = [e.step for e in lt.stream(redis_client, uid) if e.kind.value == "progress"]
    assert steps[0] == "plan" and "execute" in steps and steps[-1] == "summarize"
    assert "lease" in status["result"]["summary"] and len(status["result"]["queries"]) == 2
