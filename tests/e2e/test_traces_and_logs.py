"""One trace from the gateway's request to the worker's attempt, and JSON logs, across the
real processes.

Covers: a gateway, an operator and a worker started with OTEL_EXPORTER_OTLP_ENDPOINT
pointing at a tiny OTLP/HTTP receiver in the test export spans of one trace id; the
parent links run gateway request → `longtask.create` → `longtask.dispatch` of attempt 1 (the
gateway's own, or the operator's when its watch was first) → Celery's `run/longtask.run` →
`longtask.attempt`, the LongTask carries the create span's
context in its `longtask.io/traceparent` annotation, and the dispatch and attempt spans
name the task (namespace, name, uid, attempt, task, pool); a retried task's later attempt
(sent by the operator's clock) stays in the same trace, its dispatch again a child of the
create span; a LongTask created with kubectl (no annotation) starts its trace at the
operator's dispatch; with LONGTASK_LOG_FORMAT=json every line of the three components is a
JSON object, and their lines about a task carry its namespace, name, attempt and trace id (the
operator's read about a task it sent: it says nothing about a short task the gateway sent).

The cluster is this module's own: the session platform's operator would also handle these
LongTasks, and its components export nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from tests import helpers, lt, otlp

pytestmark = pytest.mark.cluster

NS = "default"
SERVER_KIND = 2  # SpanKind SERVER in OTLP
PRODUCER_KIND = 4
CONSUMER_KIND = 5


@pytest.fixture(scope="module")
def receiver() -> Iterator[otlp.Receiver]:
    with otlp.Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced(receiver: otlp.Receiver) -> Iterator[platform_mod.Platform]:
    """Operator, worker and gateway exporting to `receiver`, logging JSON."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export each batch soon after its spans end
        "LONGTASK_LOG_FORMAT": "json",
    }
    with cluster_mod.Cluster() as c:
        p = platform_mod.Platform(c)
        p.apply_crds()
        p.start_operator(extra_env=env)
        p.start_worker(concurrency=1, extra_env=env)
        p.start_api(auth=False, extra_env=env)
        yield p


def create(p: platform_mod.Platform, spec: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{p.api_url}/v1/namespaces/{NS}/tasks", json={"spec": spec}, timeout=30)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def one(receiver: otlp.Receiver, name: str, **attributes: Any) -> otlp.Span:
    spans = helpers.poll(
        lambda: receiver.named(name, **attributes), timeout=60, what=f"span {name} {attributes}"
    )
    assert len(spans) == 1, spans
    return spans[0]


def by_id(receiver: otlp.Receiver, trace_id: str, span_id: str) -> otlp.Span:
    """The span `span_id` of a trace, once exported (a parent ends, and is exported, after its child)."""
    found = helpers.poll(
        lambda: [s for s in receiver.trace(trace_id) if s.span_id == span_id],
        timeout=60,
        what=f"span {span_id} of trace {trace_id}",
    )
    return found[0]


def test_one_trace_from_gateway_request_to_worker_attempt(
    traced: platform_mod.Platform, receiver: otlp.Receiver
) -> None:
    created = create(traced, {"task": "demo.noop"})
    name, uid = created["name"], created["uid"]
    lt.wait_phase(traced.cluster.kubectl, NS, name, "Succeeded")

    create_span = one(receiver, "longtask.create", **{"longtask.uid": uid})
    dispatch = one(receiver, "longtask.dispatch", **{"longtask.uid": uid})
    attempt = one(receiver, "longtask.attempt", **{"longtask.uid": uid})
    request = by_id(receiver, create_span.trace_id, create_span.parent_id)
    run = by_id(receiver, attempt.trace_id, attempt.parent_id)

    assert {s.trace_id for s in (request, create_span, dispatch, run, attempt)} == {create_span.trace_id}
    assert (request.service, request.kind, request.parent_id) == ("longtask-api", SERVER_KIND, "")
    assert request.name.startswith("POST /v1/namespaces/{namespace}/tasks")
    # The gateway sends attempt 1 itself (LONGTASK_GATEWAY_DISPATCH) unless the operator's
    # watch took the guard first (a fresh gateway's first request can be that slow).
    assert create_span.service == "longtask-api"
    assert dispatch.service in ("longtask-api", "longtask-operator")
    assert (run.service, attempt.service) == ("longtask-worker", "longtask-worker")
    assert dispatch.parent_id == create_span.span_id and dispatch.kind == PRODUCER_KIND
    assert run.parent_id == dispatch.span_id and run.kind == CONSUMER_KIND
    assert run.name == "run/longtask.run"

    annotations = lt.get(traced.cluster.kubectl, NS, name)["metadata"]["annotations"]
    version, trace_id, parent_id, flags = annotations["longtask.io/traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", create_span.trace_id, create_span.span_id)
    assert int(flags, 16) & 1  # sampled
    about = {
        "longtask.namespace": NS,
        "longtask.name": name,
        "longtask.uid": uid,
        "longtask.attempt": 1,
        "longtask.task": "demo.noop",
        "longtask.pool": "default",
    }
    assert about.items() <= dispatch.attributes.items()
    assert {**about, "longtask.outcome": "succeeded"}.items() <= attempt.attributes.items()


def test_a_retried_task_stays_in_its_trace(traced: platform_mod.Platform, receiver: otlp.Receiver) -> None:
    spec = {"task": "demo.fail", "retry": {"maxRetries": 1, "backoffSeconds": 0.1, "jitter": 0}}
    created = create(traced, spec)
    uid = created["uid"]
    lt.wait_phase(traced.cluster.kubectl, NS, created["name"], "Failed")

    create_span = one(receiver, "longtask.create", **{"longtask.uid": uid})
    for attempt_no, outcome in ((1, "retrying"), (2, "failed")):
        dispatch = one(receiver, "longtask.dispatch", **{"longtask.uid": uid, "longtask.attempt": attempt_no})
        attempt = one(receiver, "longtask.attempt", **{"longtask.uid": uid, "longtask.attempt": attempt_no})
        run = by_id(receiver, attempt.trace_id, attempt.parent_id)
        assert dispatch.trace_id == attempt.trace_id == create_span.trace_id
        assert dispatch.parent_id == create_span.span_id
        assert run.parent_id == dispatch.span_id
        assert attempt.attributes["longtask.outcome"] == outcome


def test_a_task_made_with_kubectl_starts_its_trace_at_the_operator(
    traced: platform_mod.Platform, receiver: otlp.Receiver
) -> None:
    uid = lt.create(traced.cluster.kubectl, NS, "from-kubectl", task="demo.noop")
    lt.wait_phase(traced.cluster.kubectl, NS, "from-kubectl", "Succeeded")

    dispatch = one(receiver, "longtask.dispatch", **{"longtask.uid": uid})
    attempt = one(receiver, "longtask.attempt", **{"longtask.uid": uid})
    assert dispatch.parent_id == "" and dispatch.service == "longtask-operator"
    assert attempt.trace_id == dispatch.trace_id
    assert by_id(receiver, attempt.trace_id, attempt.parent_id).parent_id == dispatch.span_id
    assert not receiver.named("longtask.create", **{"longtask.uid": uid})


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{path.name}: not a JSON line: {line!r}")
    return parsed


def test_json_logs_name_the_task_and_its_trace(
    traced: platform_mod.Platform, receiver: otlp.Receiver
) -> None:
    created = create(traced, {"task": "demo.noop"})
    name, uid = created["name"], created["uid"]
    # The operator says nothing about a short task the gateway sent and that went well, so
    # its lines are read about one only the operator can send: a LongTask made with kubectl.
    by_kubectl = "logged-by-kubectl"
    kubectl_uid = lt.create(traced.cluster.kubectl, NS, by_kubectl, task="demo.noop")
    lt.wait_phase(traced.cluster.kubectl, NS, name, "Succeeded")
    lt.wait_phase(traced.cluster.kubectl, NS, by_kubectl, "Succeeded")
    logs_dir = traced.cluster.state_dir / "logs"

    def about(component: str, uid: str) -> list[dict[str, Any]]:
        return [line for line in json_lines(logs_dir / f"{component}.log") if line.get("uid") == uid]

    def messages(component: str, uid: str) -> list[str]:
        return [line["message"] for line in about(component, uid)]

    cases = [
        ("api", uid, name),
        ("worker-default-1", uid, name),
        ("operator", kubectl_uid, by_kubectl),
        ("worker-default-1", kubectl_uid, by_kubectl),
    ]
    for component, task_uid, task_name in cases:
        trace_id = one(receiver, "longtask.attempt", **{"longtask.uid": task_uid}).trace_id
        lines = helpers.poll(
            lambda c=component, u=task_uid: about(c, u),
            timeout=30,
            what=f"{component}'s lines about {task_name}",
        )
        for line in lines:
            assert {"time", "level", "logger", "message"} <= line.keys()
            assert (line.get("namespace"), line.get("name")) == (NS, task_name), line
            assert line.get("trace_id") == trace_id, line
            if component != "api" or "attempt" in line:  # the gateway's request lines name none
                assert line["attempt"] == 1, line
    assert "attempt 1 sent to longtask.default" in messages("operator", kubectl_uid)
    sent_by = [c for c in ("api", "operator") if "attempt 1 sent to longtask.default" in messages(c, uid)]
    assert len(sent_by) == 1, "the gateway or the operator sent it, once"
    assert "attempt 1 ended: succeeded" in messages("worker-default-1", uid)

    # A request about the task: its access line names it (and carries the request's own trace).
    assert httpx.get(f"{traced.api_url}/v1/namespaces/{NS}/tasks/{name}", timeout=30).status_code == 200

    def access() -> list[dict[str, Any]]:
        lines = json_lines(logs_dir / "api.log")
        return [line for line in lines if line["logger"] == "uvicorn.access" and line.get("name") == name]

    line = helpers.poll(access, timeout=30, what=f"the access line of GET {name}")[0]
    assert line["namespace"] == NS and "GET" in line["message"] and len(line["trace_id"]) == 32
