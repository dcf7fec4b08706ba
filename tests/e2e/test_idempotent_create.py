"""A retried create never makes a second task: the gateway's Idempotency-Key, and the CLI's retries.

Covers: six concurrent POSTs with one Idempotency-Key make one LongTask (counted in the
apiserver) and all answer it, with a generated name and with a given one; the quoted
(Structured Field) and the bare form of a key are one key; the key with another body is a
422 Problem, and a malformed key (empty, too long, a character outside the set, two
headers) a 400 Problem; the answer outlives the task (deleted, a retry gets the same answer
and creates nothing); a gateway killed after the create but before its Redis record leaves a
key that still finds its task (the record deleted: a retry answers the same task, another
body 422); a refused create is not remembered (a name taken: 409, then once freed the same
key creates); one key in two namespaces, or from two callers (auth on), is two keys.
`longtask submit` through a proxy that drops the gateway's first answer retries with its key
and makes one task.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from longtask_contracts import names
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests.e2e import test_gateway_auth

pytestmark = pytest.mark.cluster

BODY = {"spec": {"task": "demo.sleep", "params": {"seconds": 0.1}}}


def _tasks(kubectl, namespace: str) -> list[dict[str, Any]]:
    return json.loads(kubectl("get", "lt", "-n", namespace, "-o", "json").stdout)["items"]


def _post(
    api: str, namespace: str, body: dict[str, Any], key: str | list[str] | None = None
) -> httpx.Response:
    keys = [] if key is None else [key] if isinstance(key, str) else key
    with httpx.Client(base_url=api, timeout=30) as client:
        return client.post(
            f"/v1/namespaces/{namespace}/tasks", json=body, headers=[("Idempotency-Key", k) for k in keys]
        )


@pytest.fixture
def other_namespace(kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("name", [None, "named-once"], ids=["generated-name", "given-name"])
def test_six_concurrent_posts_with_one_key_make_one_task(platform, namespace, kubectl, name):
    body = {**BODY, **({"name": name} if name else {})}
    key = str(uuid.uuid4())
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=platform.api_url, timeout=30) as client:
            start.wait()
            answers.append(
                client.post(f"/v1/namespaces/{namespace}/tasks", json=body, headers={"Idempotency-Key": key})
            )

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1  # the same answer
    (task,) = _tasks(kubectl, namespace)
    assert answers[0].json()["uid"] == task["metadata"]["uid"]
    if name:
        assert task["metadata"]["name"] == name


def test_another_body_is_422_and_a_malformed_key_400(platform, namespace, kubectl):
    key = str(uuid.uuid4())
    first = _post(platform.api_url, namespace, BODY, key)
    assert first.status_code == 202
    # The draft's form (a Structured Field string) and the bare one are the same key.
    again = _post(platform.api_url, namespace, BODY, f'"{key}"')
    assert again.status_code == 202 and again.json() == first.json()
    other = _post(
        platform.api_url, namespace, {"spec": {"task": "demo.sleep", "params": {"seconds": 2}}}, key
    )
    assert other.status_code == 422, other.text
    assert other.json()["status"] == 422 and "Idempotency-Key" in other.json()["detail"]
    for bad in ["", "x" * 256, "not a key", "k@y", '"unclosed', [key, key]]:
        refused = _post(platform.api_url, namespace, BODY, bad)  # type: ignore[arg-type]
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["status"] == 400 and "Idempotency-Key" in refused.json()["detail"]
    assert len(_tasks(kubectl, namespace)) == 1


def test_the_answer_outlives_the_task(platform, namespace, kubectl):
    key = str(uuid.uuid4())
    first = _post(platform.api_url, namespace, BODY, key)
    assert first.status_code == 202
    kubectl("delete", "lt", "-n", namespace, first.json()["name"], "--wait=true")
    again = _post(platform.api_url, namespace, BODY, key)
    assert again.status_code == 202 and again.json() == first.json()
    assert _tasks(kubectl, namespace) == []  # not created again


def test_a_key_whose_record_was_never_written_still_finds_its_task(
    platform, namespace, kubectl, redis_client
):
    """What a gateway killed between the create and the record leaves: the object, no record."""
    key = str(uuid.uuid4())
    first = _post(platform.api_url, namespace, BODY, key)
    assert first.status_code == 202
    (task,) = _tasks(kubectl, namespace)
    digest = task["metadata"]["annotations"][names.IDEMPOTENCY_ANNOTATION]
    assert redis_client.delete(names.idempotency(digest)) == 1
    again = _post(platform.api_url, namespace, BODY, key)
    assert again.status_code == 202 and again.json() == first.json()
    assert redis_client.delete(names.idempotency(digest)) == 1  # the retry wrote the record again
    other = _post(platform.api_url, namespace, {"spec": {"task": "demo.sleep"}}, key)
    assert other.status_code == 422, other.text
    assert len(_tasks(kubectl, namespace)) == 1


def test_a_refused_create_is_not_remembered(platform, namespace, kubectl):
    taken = _post(platform.api_url, namespace, {**BODY, "name": "taken"})
    assert taken.status_code == 202
    key = str(uuid.uuid4())
    refused = _post(platform.api_url, namespace, {**BODY, "name": "taken"}, key)
    assert refused.status_code == 409, refused.text  # someone else's task: not ours
    assert "retry-after" not in refused.headers
    kubectl("delete", "lt", "-n", namespace, "taken", "--wait=true")
    created = _post(platform.api_url, namespace, {**BODY, "name": "taken"}, key)
    assert created.status_code == 202
    assert created.json()["uid"] != taken.json()["uid"]
    again = _post(platform.api_url, namespace, {**BODY, "name": "taken"}, key)  # now it is ours
    assert again.status_code == 202 and again.json() == created.json()
    (task,) = _tasks(kubectl, namespace)
    assert task["metadata"]["uid"] == created.json()["uid"]


def test_a_key_is_scoped_by_namespace(platform, namespace, other_namespace, kubectl):
    key = str(uuid.uuid4())
    here = _post(platform.api_url, namespace, BODY, key)
    there = _post(platform.api_url, other_namespace, BODY, key)
    assert here.status_code == there.status_code == 202
    assert here.json()["uid"] != there.json()["uid"]
    assert _post(platform.api_url, namespace, BODY, key).json() == here.json()
    assert _post(platform.api_url, other_namespace, BODY, key).json() == there.json()
    assert len(_tasks(kubectl, namespace)) == len(_tasks(kubectl, other_namespace)) == 1


@pytest.fixture(scope="module")
def secure_api(platform: platform_mod.Platform) -> Iterator[str]:
    """A second gateway process, with auth on."""
    port = procs.free_port()
    child = platform.start_api(port=port, auth=True)
    yield f"http://127.0.0.1:{port}"
    platform.stop_child(child)


def test_a_key_is_scoped_by_caller(secure_api, namespace, kubectl):
    key = str(uuid.uuid4())
    uids = set()
    for token in (
        test_gateway_auth.account(kubectl, namespace),
        test_gateway_auth.account(kubectl, namespace),
    ):
        with test_gateway_auth.client(secure_api, token) as caller:
            first, again = (
                caller.post(f"/v1/namespaces/{namespace}/tasks", json=BODY, headers={"Idempotency-Key": key})
                for _ in range(2)
            )
            assert first.status_code == again.status_code == 202, (first.text, again.text)
            assert again.json() == first.json()  # the caller's retry: its own task
            uids.add(first.json()["uid"])
    assert len(uids) == 2  # the other caller's key is another key
    assert len(_tasks(kubectl, namespace)) == 2


class DropFirstAnswer:
    """A TCP proxy to the gateway that passes everything on, except the first connection's
    answer: it closes that connection as soon as the gateway starts answering. The task was
    created, and the client never hears of it (as after a timeout or a lost connection)."""

    def __init__(self, port: int) -> None:
        self.upstream = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            back = self._drop if self.connections == 1 else self._pipe
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=back, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def _drop(self, upstream: socket.socket, client: socket.socket) -> None:
        upstream.recv(1)  # the gateway answers: the create is done
        client.close()
        upstream.close()
        self.dropped.set()


def test_submit_retries_a_lost_answer_with_its_key_and_makes_one_task(platform, namespace, kubectl):
    proxy = DropFirstAnswer(platform.api_port)
    try:
        argv = ["submit", "demo.sleep", "-p", "seconds=0.1", "-n", namespace]
        out = subprocess.run(
            [sys.executable, "-m", "longtask_cli", *argv, "--api", f"http://127.0.0.1:{proxy.port}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        proxy.close()
    assert proxy.dropped.is_set() and proxy.connections == 2
    assert out.returncode == 0, out.stderr
    assert "retrying the create" in out.stderr
    (task,) = _tasks(kubectl, namespace)
    assert out.stdout.strip() == f"created {namespace}/{task['metadata']['name']}"
