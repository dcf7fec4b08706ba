"""Bad input is rejected with the field named, by the apiserver (CRD) and the gateway alike.

Covers: one table of invalid specs (batches' items, itemsFrom, parallelism and maxFailedItems
among them), each rejected by `kubectl apply` naming the field and answered 422 by the
gateway naming the same field; malformed requests (bad JSON, bad
names, oversized params, bad Last-Event-ID) get 4xx with a reason, never 500.
"""

from __future__ import annotations

import json

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
