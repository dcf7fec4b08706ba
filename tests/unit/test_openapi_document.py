"""The gateway's OpenAPI document follows the configuration and declares the rules it enforces.

Covers: with auth off no security scheme, no security requirement and no 401/403 answer
(but createTask's and triggerSchedule's 403: a pool that does not admit the namespace);
with auth on the bearer scheme required on every documented operation, none of them an
open path; no query or header parameter may be null; the label selector, label keys and
values, object names and event ids are declared with the very patterns the gateway
enforces (patterns.py), which accept and refuse what Kubernetes does (a table; the
e2e contract test runs them against the apiserver); ApiError headers belong to one error.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from longtask_api import app, errors, middleware, openapi, patterns

METHODS = {"get", "post", "put", "patch", "delete"}


def document(*, auth: bool) -> dict[str, Any]:
    return openapi.build(app.create_app(), auth=auth)


def operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in doc["paths"].items() for m, op in item.items() if m in METHODS]


def test_auth_off_declares_no_security():
    doc = document(auth=False)
    assert "securitySchemes" not in doc.get("components", {})
    for path, op in operations(doc):
        assert "security" not in op, path
        # A pool's refusal of a create (a task's, or a schedule's run made now).
        refusals = {"403"} if op["operationId"] in {"createTask", "triggerSchedule"} else set()
        assert {"401", "403"} & set(op["responses"]) == refusals, path


def test_auth_on_requires_the_bearer_scheme_on_every_documented_route():
    doc = document(auth=True)
    assert doc["components"]["securitySchemes"][openapi.SCHEME] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }
    for path, op in operations(doc):
        assert path not in middleware.OPEN_PATHS
        assert op["security"] == [{openapi.SCHEME: []}], path
        assert {"401", "403"} <= set(op["responses"]), path


def test_no_parameter_may_be_null():
    for path, op in operations(document(auth=True)):
        for parameter in op.get("parameters", []):
            assert "null" not in str(parameter["schema"]), (path, parameter)


def _parameter(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    found = [p["schema"] for op in doc["paths"][path].values() for p in op["parameters"] if p["name"] == name]
    assert found and all(schema == found[0] for schema in found), (path, name)
    return dict(found[0])


def test_the_document_declares_the_enforced_patterns():
    doc = document(auth=False)
    tasks = "/v1/namespaces/{namespace}/tasks"
    assert _parameter(doc, tasks, "labelSelector")["pattern"] == patterns.LABEL_SELECTOR
    assert _parameter(doc, tasks, "namespace")["pattern"] == patterns.NAMESPACE
    assert _parameter(doc, tasks + "/{name}", "name")["pattern"] == patterns.OBJECT_NAME
    assert _parameter(doc, tasks + "/{name}/events", "Last-Event-ID")["pattern"] == patterns.STREAM_ID
    labels = doc["components"]["schemas"]["TaskCreate"]["properties"]["labels"]
    assert labels["propertyNames"]["pattern"] == patterns.LABEL_KEY
    assert labels["additionalProperties"]["pattern"] == patterns.LABEL_VALUE
    assert "patternProperties" not in labels


PREFIX_251 = ".".join(["p" * 41] * 6)
CASES = [
    (patterns.LABEL_SELECTOR, "", True),
    (patterns.LABEL_SELECTOR, "  ", True),
    (patterns.LABEL_SELECTOR, "a=b,!c, d in (e, f),g notin(h),i==j,k!=l,m=", True),
    (patterns.LABEL_SELECTOR, f"{PREFIX_251}/{'K' * 63}={'V' * 63}", True),
    (patterns.LABEL_SELECTOR, "in in (in)", True),
    (patterns.LABEL_SELECTOR, "a in in", False),
    (patterns.LABEL_SELECTOR, "a in ()", False),
    (patterns.LABEL_SELECTOR, "a,", False),
    (patterns.LABEL_SELECTOR, "a b", False),
    (patterns.LABEL_SELECTOR, "a=" + "v" * 64, False),
    (patterns.LABEL_SELECTOR, "0" * 64, False),
    (patterns.LABEL_SELECTOR, "x>1", False),
    (patterns.LABEL_KEY, "app.kubernetes.io/name", True),
    (patterns.LABEL_KEY, "topology.ebs.csi.aws.com/zone", True),
    (patterns.LABEL_KEY, "a..b/c", False),
    (patterns.LABEL_KEY, "A.example/c", False),
    (patterns.LABEL_KEY, "-a", False),
    (patterns.LABEL_VALUE, "", True),
    (patterns.LABEL_VALUE, "a b", False),
    (patterns.OBJECT_NAME, "a.b-c", True),
    (patterns.OBJECT_NAME, "a..b", False),
    (patterns.OBJECT_NAME, "a.-b", False),
    (patterns.STREAM_ID, "1719400000000-0", True),
    (patterns.STREAM_ID, "", True),
    (patterns.STREAM_ID, "null", False),
    (patterns.STREAM_ID, "1\n", False),
]


@pytest.mark.parametrize(("pattern", "value", "accepted"), CASES)
def test_patterns_accept_what_kubernetes_accepts(pattern, value, accepted):
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_error_headers_belong_to_one_error():
    first = errors.TooManyRequests("slow down", retry_after=3)
    second = errors.TooManyRequests("slow down", retry_after=7)
    assert (first.headers, second.headers) == ({"Retry-After": "3"}, {"Retry-After": "7"})
    errors.Unauthenticated("no token").headers["X-Extra"] = "1"
    assert errors.Unauthenticated("no token").headers == {"WWW-Authenticate": 'Bearer realm="longtask"'}
    assert errors.NotFound("gone").headers == {}
