"""A task's events over a WebSocket: the same events with the same ids as its SSE stream.

Covers: a WebSocket client and an SSE client of one task see the same ids and kinds, in
order, ending with the terminal event (then the socket closes with 1000); each, dropped
mid-task and reconnected with its last id (`?after=` / Last-Event-ID), receives exactly the
rest: nothing missed, nothing twice; a client's ping is answered with a pong; a bad id is a
422 error message and close code 4422. With the gateway's auth on: a token in the
Authorization header or as the subprotocol `base64url.bearer.authorization.k8s.io.<token>`
opens it (the answered subprotocol is longtask.v1, never the token); no token is refused
at the handshake; a token without `get` in the namespace gets a 403 error and close code
4403; the namespace-wide SSE stream needs `watch` (403 without it).
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from longtask_dev import procs
from tests import helpers

pytestmark = pytest.mark.cluster


def _ws_url(api: str, namespace: str, name: str, after: str | None = None) -> str:
    url = api.replace("http://", "ws://") + f"/v1/namespaces/{namespace}/tasks/{name}/ws"
    return url + (f"?after={after}" if after else "")


def _messages(ws: ClientConnection) -> list[dict]:
    """Every message until the server closes the socket (pings dropped)."""
    got: list[dict] = []
    try:
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message["event"] not in ("ping", "pong"):
                got.append(message)
    except ConnectionClosed:
        return got


def _submit(api: str, namespace: str, **spec: object) -> str:
    response = httpx.post(f"{api}/v1/namespaces/{namespace}/tasks", json={"spec": spec})
    assert response.status_code == 202, response.text
    return str(response.json()["name"])


def test_websocket_and_sse_see_the_same_ids_and_both_resume_exactly(platform, namespace):
    api = platform.api_url
    name = _submit(api, namespace, task="demo.sleep", params={"seconds": 2, "steps": 10})

    # WebSocket: drop after 30%, resume with ?after=.
    ws_first: list[dict] = []
    with connect(_ws_url(api, namespace, name)) as ws:
        ws.send(json.dumps({"event": "ping"}))
        pong = False
        while True:
            message = json.loads(ws.recv(timeout=60))
            pong = pong or message["event"] == "pong"
            if message["event"] in ("ping", "pong"):
                continue
            ws_first.append(message)
            if message["event"] == "progress" and message["data"]["progress"] >= 30:
                break
    assert pong
    with connect(_ws_url(api, namespace, name, after=ws_first[-1]["id"])) as ws:
        ws_rest = _messages(ws)
        assert ws.close_code == 1000
    ws_ids = [m["id"] for m in ws_first + ws_rest]

    # SSE: drop after 60%, resume with Last-Event-ID.
    url = f"/v1/namespaces/{namespace}/tasks/{name}/events"
    with httpx.Client(base_url=api) as client:
        sse_first: list[helpers.SseEvent] = []
        for event in helpers.sse_events(client, url):
            sse_first.append(event)
            if event.event == "progress" and event.data["progress"] >= 60:
                break
        sse_rest = list(helpers.sse_events(client, url, last_event_id=sse_first[-1].id))
    sse_ids = [e.id for e in sse_first + sse_rest]

    assert ws_ids == sse_ids and len(set(ws_ids)) == len(ws_ids)
    assert [m["event"] for m in ws_first + ws_rest] == [e.event for e in sse_first + sse_rest]
    assert ws_rest[-1]["event"] == "succeeded" and sse_rest[-1].event == "succeeded"
    assert [m["data"] for m in ws_first + ws_rest] == [e.data for e in sse_first + sse_rest]

    with connect(_ws_url(api, namespace, name, after="not-an-id")) as ws:
        error = _messages(ws)
        assert error[0]["event"] == "error" and error[0]["data"]["status"] == 422
        assert ws.close_code == 4422


def _token(kubectl, namespace: str, verbs: list[str]) -> str:
    account = f"sa-{uuid.uuid4().hex[:6]}"
    kubectl("create", "serviceaccount", account, "-n", namespace)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": account, "namespace": namespace},
        "rules": [{"apiGroups": ["longtask.io"], "resources": ["longtasks"], "verbs": verbs}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": account, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    return str(kubectl("create", "token", account, "-n", namespace).stdout.strip())


def test_websocket_and_namespace_stream_follow_the_access_rules(platform, kubectl, namespace):
    name = _submit(platform.api_url, namespace, task="demo.noop")
    helpers.poll(
        lambda: (
            httpx.get(f"{platform.api_url}/v1/namespaces/{namespace}/tasks/{name}")
            .json()["status"]
            .get("phase")
            == "Succeeded"
        ),
        timeout=60,
        what="the task to succeed",
    )
    port = procs.free_port()
    child = platform.start_api(port=port, auth=True)
    api = f"http://127.0.0.1:{port}"
    try:
        reader = _token(kubectl, namespace, ["get"])
        url = _ws_url(api, namespace, name)
        with connect(url, additional_headers={"Authorization": f"Bearer {reader}"}) as ws:
            assert _messages(ws)[-1]["event"] == "succeeded"
        encoded = base64.urlsafe_b64encode(reader.encode()).decode().rstrip("=")
        protocols = [f"base64url.bearer.authorization.k8s.io.{encoded}", "longtask.v1"]
        with connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == "longtask.v1"
            assert _messages(ws)[-1]["event"] == "succeeded"
        with pytest.raises(InvalidStatus), connect(url):
            pass
        lister = _token(kubectl, namespace, ["list"])
        with connect(url, additional_headers={"Authorization": f"Bearer {lister}"}) as ws:
            error = _messages(ws)
            assert error[0]["data"]["status"] == 403 and "may not get" in error[0]["data"]["detail"]
            assert ws.close_code == 4403
        events = f"{api}/v1/namespaces/{namespace}/events"
        denied = httpx.get(events, headers={"Authorization": f"Bearer {reader}"})
        assert denied.status_code == 403 and "may not watch" in denied.json()["detail"]
    finally:
        platform.stop_child(child)
