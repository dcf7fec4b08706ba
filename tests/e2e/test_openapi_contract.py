"""The gateway answers as its OpenAPI document says: schemathesis finds no failing check.

Covers: schemathesis (its CLI, as anyone would run it from outside) reads /openapi.json
from a running `longtask api` and sends each documented operation the document's examples,
its boundary cases (coverage) and generated valid and invalid requests (fuzzing), with
every check (no 5xx, documented status codes, content types, headers and bodies, valid
input accepted, invalid input rejected, unsupported methods, a required Authorization);
once with auth off (the document has no security requirement, anyone may call) and once
with auth on (bearer required on every documented route: the token of an account allowed
everything, and schemathesis's own requests without it must get 401). Seeded and bounded
in examples, so each run sends the same few hundred requests; the random namespaces do
not exist, so most operations answer 404. Then the read operations once more, pointed at
a real namespace and a finished task, so that they answer 200 with real data (status,
event log, event stream to its end, lists). The four rules JSON Schema cannot state
(backoffSeconds ≤ maxBackoffSeconds; a continue token the apiserver handed out; a batch's
items in one place; parallelism and maxFailedItems only with items) are let through by
schemathesis_hooks.py, only as their own 422.

The longest name, label key and value and the selector the declared patterns allow are
accepted by the apiserver too (the patterns accept nothing Kubernetes refuses, which the
404s above cannot show).

Left out: the namespace-wide event stream, which never ends by itself (its Last-Event-ID
is the same declared header as the task stream's, which is run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import lt

pytestmark = pytest.mark.cluster

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ROOT = Path(__file__).resolve().parents[2]
# A stream answer that never ends: schemathesis would wait out its request timeout.
ENDLESS = "streamNamespaceEvents"


@pytest.fixture(scope="module")
def secure_api(platform: platform_mod.Platform) -> Iterator[str]:
    """A second gateway process with auth on."""
    port = procs.free_port()
    child = platform.start_api(port=port, auth=True)
    yield f"http://127.0.0.1:{port}"
    platform.stop_child(child)


def schemathesis(
    url: str, *, cwd: Path, headers: dict[str, str] | None = None, options: tuple[str, ...] = ()
) -> None:
    """Run schemathesis against the gateway at `url`; fail with its report if it found anything."""
    argv = [
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        "--phases=examples,coverage,fuzzing",
        "--max-examples=25",
        "--seed=20261205",
        "--generation-database=none",
        f"--exclude-operation-id={ENDLESS}",
        "--request-timeout=20",
        "--workers=1",
        "--no-color",
        *options,
    ]
    for name, value in (headers or {}).items():
        argv.append(f"--header={name}: {value}")
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.e2e.schemathesis_hooks", PYTHONPATH=str(ROOT))
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_auth_off(platform, tmp_path):
    schemathesis(platform.api_url, cwd=tmp_path)


def test_auth_on(platform, secure_api, tmp_path):
    token = platform.dev_token()
    schemathesis(secure_api, cwd=tmp_path, headers={"Authorization": f"Bearer {token}"})


def test_the_longest_names_and_labels_the_document_allows_are_accepted(platform, namespace):
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253: an object name's limit
    key = ".".join(["p" * 41] * 6) + "/" + "K" * 63  # a 251-character prefix, a 63-character name
    labels = {key: "V" * 63, "empty": ""}
    tasks = f"{platform.api_url}/v1/namespaces/{namespace}/tasks"
    created = httpx.post(tasks, json={"name": name, "labels": labels, "spec": {"task": "demo.noop"}})
    assert created.status_code == 202, created.text
    selector = f"{key} in ({'V' * 63}, other), empty=, !absent"
    listed = httpx.get(tasks, params={"labelSelector": selector})
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["items"]] == [name]
    assert httpx.get(f"{tasks}/{name}").json()["labels"] == labels


def test_reads_of_a_real_task(platform, kubectl, namespace, tmp_path):
    """The read operations pointed at a namespace and a finished task, so they answer 200 with
    real data (its status, event log, event stream to the end, the namespace's list)."""
    lt.create(kubectl, namespace, "done", task="demo.noop")
    lt.wait_phase(kubectl, namespace, "done", "Succeeded")
    # schemathesis reads ./schemathesis.toml: these path parameters take these values.
    config = f'[parameters]\n"path.namespace" = "{namespace}"\n"path.name" = "done"\n'
    (tmp_path / "schemathesis.toml").write_text(config)
    schemathesis(platform.api_url, cwd=tmp_path, options=("--include-method=GET",))
