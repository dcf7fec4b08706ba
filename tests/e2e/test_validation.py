"""Bad input is rejected with the field named, by the apiserver (CRD) and the gateway alike.

Covers: one table of invalid specs (batches' items, itemsFrom, parallelism and maxFailedItems
among them), each rejected by `kubectl apply` naming the field and answered 422 by the
gateway naming the same field; a valid batch is accepted, its items and itemsFrom cannot be
changed, added or removed afterwards (a cancel still can), `kubectl explain` states the
limits and `kubectl get` has the Items column; malformed requests (bad JSON, bad
names, oversized params, bad Last-Event-ID) get 4xx with a reason, never 500.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.cluster

BAD_SPECS = [
    ("no task", {}, "spec.task"),
    ("task name with spaces", {"task": "Bad Name"}, "spec.task"),
    ("priority too high", {"task": "demo.noop", "priority": 42}, "spec.priority"),
    ("zero timeout", {"task": "demo.noop", "timeoutSeconds": 0}, "spec.timeoutSeconds"),
    ("negative retries", {"task": "demo.noop", "retry": {"maxRetries": -1}}, "spec.retry.maxRetries"),
    (
        "backoff bounds reversed",
        {"task": "demo.noop", "retry": {"backoffSeconds": 100, "maxBackoffSeconds": 10}},
        "spec.retry",
    ),
    ("too many params", {"task": "demo.noop", "params": {f"k{i}": i for i in range(65)}}, "spec.params"),
    ("params not an object", {"task": "demo.noop", "params": [1, 2]}, "spec.params"),
    ("bad pool name", {"task": "demo.noop", "pool": "Bad_Pool"}, "spec.pool"),
    ("unknown field", {"task": "demo.noop", "colour": "red"}, "spec.colour"),
    # Batches (docs/batches.md): the object's own items are bounded by count and keys.
    ("items not a list", {"task": "demo.noop", "items": {"a": 1}}, "spec.items"),
    ("no items", {"task": "demo.noop", "items": []}, "spec.items"),
    ("too many items", {"task": "demo.noop", "items": [{}] * 1001}, "spec.items"),
    ("an item not an object", {"task": "demo.noop", "items": [{"a": 1}, 2]}, "spec.items"),
    (
        "an item with too many keys",
        {"task": "demo.noop", "items": [{f"k{i}": i for i in range(65)}]},
        "spec.items",
    ),
    (
        "items and itemsFrom",
        {"task": "demo.noop", "items": [{}], "itemsFrom": {"upload": "abcdefgh", "count": 1}},
        "spec.itemsFrom",
    ),
    (
        "itemsFrom without a count",
        {"task": "demo.noop", "itemsFrom": {"upload": "abcdefgh"}},
        "spec.itemsFrom",
    ),
    (
        "bad upload id",
        {"task": "demo.noop", "itemsFrom": {"upload": "../x", "count": 1}},
        "spec.itemsFrom.upload",
    ),
    ("parallelism without items", {"task": "demo.noop", "parallelism": 4}, "spec.parallelism"),
    ("maxFailedItems without items", {"task": "demo.noop", "maxFailedItems": 0}, "spec.maxFailedItems"),
    ("parallelism too high", {"task": "demo.noop", "items": [{}], "parallelism": 1001}, "spec.parallelism"),
]


@pytest.mark.parametrize(("case", "spec", "field"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_apiserver_rejects_naming_the_field(platform, kubectl, namespace, case, spec, field):
    lt = {"apiVersion": "longtask.io/v1alpha1", "kind": "LongTask", "metadata": {"name": "bad"}, "spec": spec}
    result = kubectl(
        "create", "--validate=strict", "-n", namespace, "-f", "-", input=json.dumps(lt), check=False
    )
    assert result.returncode != 0, f"{case}: accepted"
    assert field in result.stderr, result.stderr


@pytest.mark.parametrize(("case", "spec", "field"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_gateway_answers_422_naming_the_field(platform, namespace, case, spec, field):
    response = httpx.post(f"{platform.api_url}/v1/namespaces/{namespace}/tasks", json={"spec": spec})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"] and any(e["field"].startswith(field) for e in body["errors"]), body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        (
            "POST",
            "/v1/namespaces/{ns}/tasks",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
        ),
        (
            "POST",
            "/v1/namespaces/{ns}/tasks",
            {"content": b"task=x", "headers": {"content-type": "text/plain"}},
            422,
        ),
        (
            "POST",
            "/v1/namespaces/{ns}/tasks",
            {"json": {"spec": {"task": "demo.noop"}, "name": "UPPER"}},
            422,
        ),
        (
            "POST",
            "/v1/namespaces/{ns}/tasks",
            {"json": {"spec": {"task": "demo.noop", "params": {"blob": "x" * 70_000}}}},
            422,
        ),
        ("POST", "/v1/namespaces/Bad_NS/tasks", {"json": {"spec": {"task": "demo.noop"}}}, 422),
        ("POST", "/v1/namespaces/no-such-ns/tasks", {"json": {"spec": {"task": "demo.noop"}}}, 404),
        (  # over LONGTASK_MAX_BODY_BYTES (creates have LONGTASK_MAX_BATCH_BODY_BYTES: a batch's items)
            "POST",
            "/v1/namespaces/{ns}/tasks/x/cancel",
            {"json": {"pad": "x" * 300_000}},
            413,
        ),
        (
            "POST",
            "/v1/namespaces/{ns}/tasks",
            {"json": {"spec": {"task": "demo.noop"}, "pad": "x" * 300_000}},
            422,
        ),
        ("GET", "/v1/namespaces/{ns}/tasks/x/events", {"headers": {"Last-Event-ID": "garbage"}}, 422),
        ("GET", "/v1/namespaces/{ns}/tasks", {"params": {"phase": "Sleeping"}}, 422),
        ("GET", "/v1/namespaces/{ns}/tasks", {"params": {"limit": 0}}, 422),
        ("GET", "/v1/namespaces/{ns}/tasks", {"params": {"labelSelector": "a in in"}}, 422),
    ],
)
def test_malformed_requests_get_a_reason_never_500(platform, namespace, method, path, kwargs, status):
    response = httpx.request(method, platform.api_url + path.format(ns=namespace), **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_duplicate_name_is_409(platform, namespace):
    url = f"{platform.api_url}/v1/namespaces/{namespace}/tasks"
    body = {"name": "once", "spec": {"task": "demo.noop"}}
    assert httpx.post(url, json=body).status_code == 202
    second = httpx.post(url, json=body)
    assert second.status_code == 409 and "already exists" in second.json()["detail"]


def _apply_patch(
    kubectl, namespace: str, name: str, kind: str, patch: Any
) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "patch", "-n", namespace, f"lt/{name}", "--type", kind, "-p", json.dumps(patch), check=False
    )


def test_a_batch_is_accepted_and_its_items_are_immutable(platform, kubectl, namespace):
    pool = f"nobody-{uuid.uuid4().hex[:6]}"  # nothing runs these: only the schema is looked at
    for name, spec in (
        (
            "batch",
            {"task": "demo.noop", "pool": pool, "items": [{"a": 1}], "parallelism": 2, "maxFailedItems": 0},
        ),
        ("single", {"task": "demo.noop", "pool": pool}),
    ):
        lt_obj = {
            "apiVersion": "longtask.io/v1alpha1",
            "kind": "LongTask",
            "metadata": {"name": name},
            "spec": spec,
        }
        kubectl("create", "--validate=strict", "-n", namespace, "-f", "-", input=json.dumps(lt_obj))
    refusals = [
        ("batch", "merge", {"spec": {"items": [{"a": 2}]}}, "spec.items is immutable"),
        (
            "batch",
            "json",
            [{"op": "remove", "path": "/spec/items"}],
            "spec.items and spec.itemsFrom are immutable",
        ),
        ("single", "merge", {"spec": {"items": [{"a": 1}]}}, "spec.items and spec.itemsFrom are immutable"),
        ("single", "merge", {"spec": {"itemsFrom": {"upload": "abcdefgh", "count": 3}}}, "immutable"),
        ("batch", "merge", {"spec": {"itemsFrom": {"upload": "abcdefgh", "count": 3}}}, "not both"),
    ]
    for name, kind, patch, message in refusals:
        result = _apply_patch(kubectl, namespace, name, kind, patch)
        assert result.returncode != 0 and message in result.stderr, (patch, result.stderr)
    for name in ("batch", "single"):  # the other rules still let a cancel through
        assert _apply_patch(kubectl, namespace, name, "merge", {"spec": {"cancel": True}}).returncode == 0
    assert "ITEMS" in kubectl("get", "lt", "-n", namespace).stdout.splitlines()[0]
    explained = " ".join(kubectl("explain", "longtask.spec.items").stdout.split())
    assert "1 to 1000 items" in explained and "64 keys" in explained and "1.5 MiB" in explained, explained
