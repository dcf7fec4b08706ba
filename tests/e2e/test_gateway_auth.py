"""Only whom Kubernetes allows gets through the gateway (a second gateway process, auth on).

Covers: no token, another scheme or a token the apiserver rejects → 401 with
`WWW-Authenticate: Bearer` and a Problem, while /healthz, /readyz, /metrics and the
OpenAPI document stay open; a ServiceAccount token without RBAC on LongTasks → 403 naming
the user and the verb; a token whose Role allows namespace A only creates, gets, lists,
cancels, streams (SSE) and lists and replays dead letters in A, and gets 403 for each of
them in B (a listing without a namespace shows A's dead letters only, a replay-all
replays A's only); 3 MB bodies → 413 with a Content-Length and chunked; bodies that are
not JSON → the documented 422 Problem, never 500; unknown routes and methods → Problems;
the create rate limit per caller (429 with Retry-After, another caller unaffected), per
client IP when auth is off; CORS
headers only for configured origins; an apiserver that cannot be reached → 503, not 500;
the `longtask-dev` token that `dev up --auth` writes lets the CLI (env LONGTASK_TOKEN, or
--token) submit and watch, and a bad --token gets the 401 reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import helpers, lt

pytestmark = pytest.mark.cluster

BURST = 4  # creations one caller may make at once on the secured gateway
ORIGIN = "https://ui.example"


@pytest.fixture(scope="module")
def secure_api(platform: platform_mod.Platform) -> Iterator[str]:
    """A second gateway process with auth on, a small create burst and one CORS origin."""
    port = procs.free_port()
    env = {
        "LONGTASK_CREATE_BURST": str(BURST),
        "LONGTASK_CREATE_RATE_PER_SECOND": "0.001",  # refills one token in ~17 minutes
        "LONGTASK_CORS_ORIGINS": ORIGIN,
        "LONGTASK_MAX_BATCH_BODY_BYTES": "2000000",  # creates too: the 3 MB bodies below are 413
    }
    child = platform.start_api(port=port, auth=True, extra_env=env)
    assert "gateway auth: on" in child.log_tail(50)
    yield f"http://127.0.0.1:{port}"
    platform.stop_child(child)


@pytest.fixture
def other_namespace(kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def account(kubectl, namespace: str, *, role: bool = True) -> str:
    """A token of a new ServiceAccount in `namespace`, allowed every gateway route there if `role`."""
    name = f"sa-{uuid.uuid4().hex[:6]}"
    kubectl("create", "serviceaccount", name, "-n", namespace)
    if role:
        docs = [
            platform_mod.user_role(name, kind="Role", namespace=namespace),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ]
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    return str(kubectl("create", "token", name, "-n", namespace).stdout.strip())


def client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in response.text
    return body


def test_no_token_or_a_rejected_one_is_401_and_probes_stay_open(secure_api, namespace):
    tasks = f"/v1/namespaces/{namespace}/tasks"
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer not-a-token"}):
        with httpx.Client(base_url=secure_api, headers=headers) as c:
            for response in (
                c.get(tasks),
                c.post(tasks, json={"spec": {"task": "demo.noop"}}),
                c.get("/v1/deadletters"),
                c.get(f"{tasks}/x/events"),
                c.get("/v1/no-such-route"),
            ):
                problem(response, 401)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "not-a-token" not in response.text
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(secure_api + path).status_code == 200, path


def test_a_token_without_rbac_is_403(secure_api, kubectl, namespace):
    token = account(kubectl, namespace, role=False)
    with client(secure_api, token) as c:
        body = problem(c.post(f"/v1/namespaces/{namespace}/tasks", json={"spec": {"task": "demo.noop"}}), 403)
        assert body["detail"].startswith(f"system:serviceaccount:{namespace}:sa-")
        assert "may not create longtasks.longtask.io" in body["detail"]
        problem(c.get(f"/v1/namespaces/{namespace}/tasks"), 403)
        assert c.get("/v1/deadletters").json()["items"] == []  # only allowed namespaces are shown
        problem(c.get("/v1/deadletters", params={"namespace": namespace}), 403)


def test_a_token_allowed_in_a_acts_in_a_only(secure_api, kubectl, namespace, other_namespace):
    a, b = namespace, other_namespace
    lt.create(kubectl, b, "theirs", task="demo.noop")  # exists: B answers 403, never 404
    with client(secure_api, account(kubectl, a)) as c:
        created = c.post(f"/v1/namespaces/{a}/tasks", json={"spec": {"task": "demo.noop"}})
        assert created.status_code == 202, created.text
        mine = created.json()["name"]
        problem(c.post(f"/v1/namespaces/{b}/tasks", json={"spec": {"task": "demo.noop"}}), 403)

        assert c.get(f"/v1/namespaces/{a}/tasks/{mine}").json()["name"] == mine
        problem(c.get(f"/v1/namespaces/{b}/tasks/theirs"), 403)
        assert [t["name"] for t in c.get(f"/v1/namespaces/{a}/tasks").json()["items"]] == [mine]
        problem(c.get(f"/v1/namespaces/{b}/tasks"), 403)

        kinds = [e.event for e in helpers.sse_events(c, f"/v1/namespaces/{a}/tasks/{mine}/events")]
        assert kinds[-1] == "succeeded"
        with pytest.raises(httpx.HTTPStatusError) as denied:
            list(helpers.sse_events(c, f"/v1/namespaces/{b}/tasks/theirs/events"))
        problem(denied.value.response, 403)

        assert c.post(f"/v1/namespaces/{a}/tasks/{mine}/cancel").status_code == 202
        problem(c.post(f"/v1/namespaces/{b}/tasks/theirs/cancel"), 403)
    assert lt.get(kubectl, b, "theirs")["spec"].get("cancel") is not True


def _dead_letter(kubectl, namespace: str, name: str) -> None:
    lt.create(kubectl, namespace, name, task="demo.fail", retry={"maxRetries": 0})
    assert lt.wait_phase(kubectl, namespace, name, "Failed")["deadLettered"] is True


def test_dead_letters_of_a_only(secure_api, kubectl, namespace, other_namespace):
    a, b = namespace, other_namespace
    _dead_letter(kubectl, a, "dl-a")
    _dead_letter(kubectl, b, "dl-b")
    with client(secure_api, account(kubectl, a)) as c:
        assert [e["name"] for e in c.get("/v1/deadletters", params={"namespace": a}).json()["items"]] == [
            "dl-a"
        ]
        problem(c.get("/v1/deadletters", params={"namespace": b}), 403)
        everything = c.get("/v1/deadletters").json()["items"]
        assert [(e["namespace"], e["name"]) for e in everything] == [(a, "dl-a")]

        problem(c.post(f"/v1/deadletters/{b}/dl-b/replay"), 403)
        problem(c.post("/v1/deadletters/replay", params={"namespace": b}), 403)
        replayed = c.post("/v1/deadletters/replay")
        assert replayed.status_code == 202, replayed.text
        assert [(e["namespace"], e["name"]) for e in replayed.json()["items"]] == [(a, "dl-a")]
        helpers.poll(lambda: lt.status(kubectl, a, "dl-a").get("replays") == 1, timeout=30, what="replay")
        assert lt.wait_phase(kubectl, a, "dl-a", "Failed")["attempts"] == 2
        one = c.post(f"/v1/deadletters/{a}/dl-a/replay")
        assert one.status_code == 202, one.text
    assert not lt.status(kubectl, b, "dl-b").get("replays")


def _chunks(total: int):
    for _ in range(total // 100_000):
        yield b"x" * 100_000


def test_oversized_and_malformed_bodies_get_documented_problems(secure_api, kubectl, namespace):
    url = f"/v1/namespaces/{namespace}/tasks"
    json_type = {"content-type": "application/json"}
    with client(secure_api, account(kubectl, namespace)) as c:
        body = problem(c.post(url, headers=json_type, content=b"x" * 3_000_000), 413)
        assert "3000000 bytes" in body["detail"]
        body = problem(c.post(url, headers=json_type, content=_chunks(3_000_000)), 413)
        assert "chunked" in body["detail"]
        for content, headers in (
            (b"{not json", json_type),
            (b"\xff\xfe{", json_type),  # not UTF-8: FastAPI's own 400 turned into the same 422
            (b"task=x", {"content-type": "text/plain"}),
        ):
            body = problem(c.post(url, headers=headers, content=content), 422)
            assert body["errors"] and body["errors"][0]["field"] == "body", body
        problem(c.delete(url), 405)
        problem(c.get("/v1/no-such-route"), 404)
        operation = c.get("/openapi.json").json()["paths"]["/v1/namespaces/{namespace}/tasks"]["post"]
        assert {"401", "403", "413", "422", "429", "503"} <= set(operation["responses"])


def test_create_rate_limit_is_per_caller(secure_api, kubectl, namespace):
    url = f"/v1/namespaces/{namespace}/tasks"
    body = {"spec": {"task": "demo.noop"}}
    with client(secure_api, account(kubectl, namespace)) as c:
        for _ in range(BURST):
            assert c.post(url, json=body).status_code == 202
        limited = c.post(url, json=body)
        problem(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
    with client(secure_api, account(kubectl, namespace)) as other:
        assert other.post(url, json=body).status_code == 202


def test_with_auth_off_the_create_limit_is_per_client_ip(platform, namespace):
    port = procs.free_port()
    env = {"LONGTASK_CREATE_BURST": "1", "LONGTASK_CREATE_RATE_PER_SECOND": "0.001"}
    child = platform.start_api(port=port, auth=False, extra_env=env)
    try:
        assert "gateway auth: off" in child.log_tail(50)
        with client(f"http://127.0.0.1:{port}") as c:
            assert (
                c.post(f"/v1/namespaces/{namespace}/tasks", json={"spec": {"task": "demo.noop"}}).status_code
                == 202
            )
            limited = c.post(f"/v1/namespaces/{namespace}/tasks", json={"spec": {"task": "demo.noop"}})
            problem(limited, 429)
            assert "Retry-After" in limited.headers
    finally:
        platform.stop_child(child)


def test_cors_headers_only_for_configured_origins(secure_api, platform):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = httpx.options(f"{secure_api}/v1/namespaces/x/tasks", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = httpx.options(
        f"{secure_api}/v1/namespaces/x/tasks", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    # The session gateway has no LONGTASK_CORS_ORIGINS: no CORS headers at all.
    plain = httpx.get(f"{platform.api_url}/healthz", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_an_unreachable_apiserver_is_503_never_500(platform, cluster, kubectl, namespace, tmp_path: Path):
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{procs.free_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    port = procs.free_port()
    child = platform.start_api(
        port=port, auth=True, extra_env={"KUBECONFIG": str(kubeconfig), "LONGTASK_KUBE_TIMEOUT_SECONDS": "2"}
    )
    try:
        token = account(kubectl, namespace)
        with client(f"http://127.0.0.1:{port}", token) as c:
            body = problem(c.get(f"/v1/namespaces/{namespace}/tasks"), 503)
            assert token not in body["detail"]
            problem(c.get("/readyz"), 503)
            assert c.get("/healthz").status_code == 200, "liveness does not depend on the apiserver"
    finally:
        platform.stop_child(child)


def _cli(url: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LONGTASK_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "longtask_cli", *args, "--api", url],
        env=dict(env, **({"LONGTASK_TOKEN": token} if token else {})),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_dev_token_lets_the_cli_in(secure_api, platform, namespace):
    token = platform.dev_token()
    out = _cli(secure_api, "submit", "demo.noop", "-n", namespace, "--watch", token=token)
    assert out.returncode == 0, out.stderr
    assert "Succeeded" in out.stdout.splitlines()[-1]
    out = _cli(secure_api, "dlq", "list", "-n", namespace, "--token", token)
    assert out.returncode == 0, out.stderr
    out = _cli(secure_api, "watch", "anything", "-n", namespace, "--token", "not-a-token")
    assert out.returncode == 1 and "error 401" in out.stderr and "not valid" in out.stderr
    out = _cli(secure_api, "cancel", "anything", "-n", namespace)
    assert out.returncode == 1 and "error 401" in out.stderr and "bearer token is required" in out.stderr
