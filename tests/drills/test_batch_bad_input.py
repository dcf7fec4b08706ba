"""Drill: bad batch input, against the real apiserver, gateway, operator, worker and Redis.

Covers: items that are not a list, too many, or not objects are refused at `kubectl apply`
by the schema, naming the field; the same and an oversized item (which only the gateway can
measure) are refused by the gateway with a Problem naming the field; after each refusal no
LongTask exists and nothing of the items is stored in Redis (nothing half-created), and the
platform goes on: a task created right after runs to Succeeded. An oversized item applied
with kubectl (the schema cannot measure it) fails its task with InvalidSpec before anything
runs, and its items are still listed (Cancelled), not a 500.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from longtask_contracts import models, names
from tests import lt

pytestmark = pytest.mark.cluster

NOT_A_LIST = {"doc": "a.pdf"}
TOO_MANY = [{"doc": "a.pdf"}] * 100_001
NOT_AN_OBJECT = [{"doc": "a.pdf"}] * 1200 + ["b.pdf"]
OVERSIZED = [{"doc": "a.pdf"}] * 1200 + [{"text": "x" * (models.ITEM_MAX_BYTES + 1)}]


def _nothing_left(kubectl, namespace: str, redis_client, uploads_before: set[str]) -> None:
    assert json.loads(kubectl("get", "lt", "-n", namespace, "-o", "json").stdout)["items"] == []
    assert set(redis_client.scan_iter(match=names.upload("*"), count=1000)) == uploads_before


@pytest.mark.parametrize(
    ("items", "field"),
    [(NOT_A_LIST, "spec.items"), ([{}] * 1001, "spec.items"), ([{"doc": "a.pdf"}, "b.pdf"], "spec.items[1]")],
    ids=["not-a-list", "too-many", "not-an-object"],
)
def test_the_schema_refuses_bad_items_at_apply(platform, kubectl, namespace, redis_client, items, field):
    before = set(redis_client.scan_iter(match=names.upload("*"), count=1000))
    manifest = {
        "apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": "bad"},
        "spec": {"task": "demo.noop", "items": items},
    }  # fmt: skip
    result = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and field in result.stderr, result.stderr
    _nothing_left(kubectl, namespace, redis_client, before)


@pytest.mark.parametrize(
    ("items", "field"),
    [
        (NOT_A_LIST, "items"),
        (TOO_MANY, "items"),
        (NOT_AN_OBJECT, "items.1200"),
        (OVERSIZED, "items.1200"),
    ],
    ids=["not-a-list", "too-many", "not-an-object", "oversized"],
)
def test_the_gateway_refuses_bad_items_and_the_platform_goes_on(
    platform, kubectl, namespace, redis_client, items: Any, field: str
):
    before = set(redis_client.scan_iter(match=names.upload("*"), count=1000))
    url = f"{platform.api_url}/v1/namespaces/{namespace}/tasks"
    answer = httpx.post(url, json={"spec": {"task": "demo.noop"}, "items": items}, timeout=60)
    assert answer.status_code == 422, answer.text[:300]
    problem = answer.json()
    assert problem["status"] == 422 and [e["field"] for e in problem["errors"]] == [field], problem
    _nothing_left(kubectl, namespace, redis_client, before)

    after = httpx.post(url, json={"name": "after", "spec": {"task": "demo.noop"}}, timeout=30)
    assert after.status_code == 202, after.text
    lt.wait_phase(kubectl, namespace, "after", "Succeeded")


def test_an_oversized_item_applied_with_kubectl_fails_the_task_and_its_items_are_listed(
    platform, kubectl, namespace, redis_client
):
    # The schema cannot measure an item's bytes: the object is made, the operator fails it.
    manifest = {
        "apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": "heavy"},
        "spec": {"task": "demo.noop", "items": [{"doc": "a.pdf"}, OVERSIZED[-1]]},
    }  # fmt: skip
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    status = lt.wait_phase(kubectl, namespace, "heavy", "Failed")
    assert status["error"]["type"] == "InvalidSpec" and "items[1]" in status["error"]["message"]
    answer = httpx.get(f"{platform.api_url}/v1/namespaces/{namespace}/tasks/heavy/items", timeout=30)
    assert answer.status_code == 200, answer.text
    assert [(e["index"], e["phase"]) for e in answer.json()["items"]] == [(0, "Cancelled"), (1, "Cancelled")]
