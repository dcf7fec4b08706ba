"""Finished tasks expire, and bad input never breaks the operator.

Covers: ttlSecondsAfterFinished deletes a finished LongTask and every Redis key of it; a
TTL deletion the apiserver refuses (a ValidatingAdmissionPolicy here) is tried again until
the LongTask is gone, its keys kept until then; a task cancelled before it was ever sent is
deleted at its TTL too;
params the task rejects and an unknown task name end in a clear Failed without retries;
a status edited by hand to nonsense is rejected by the apiserver, a wrong-but-valid one is
tolerated; a malformed entry in the status stream is dropped; other tasks keep flowing.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from longtask_contracts import names
from tests import helpers, lt, policies

pytestmark = pytest.mark.cluster


def _keys_mentioning(redis_client, uid: str) -> list[str]:
    keys = [k for k in redis_client.scan_iter(match=f"*{uid}*")]
    keys += [z for z in names.ZSETS if redis_client.zscore(z, uid) is not None]
    keys += [names.DLQ] if redis_client.hexists(names.DLQ, uid) else []
    return keys


def test_ttl_removes_the_task_and_its_redis_keys(platform, kubectl, namespace, redis_client):
    uid = lt.create(
        kubectl,
        namespace,
        "brief",
        task="demo.sleep",
        params={"seconds": 0.2, "steps": 2},
        ttlSecondsAfterFinished=2,
    )
    helpers.poll(lambda: _keys_mentioning(redis_client, uid), timeout=30, what="the task's keys")
    kubectl("wait", "-n", namespace, "lt/brief", "--for=delete", "--timeout=60s")
    # Forgotten once the DELETE succeeded (a refused one keeps them, to be tried again).
    helpers.poll(lambda: not _keys_mentioning(redis_client, uid), timeout=10, what="its keys forgotten")


REFUSE_DELETE_LABEL = "test.longtask.io/refuse-delete"


def _maintenance_failures(platform) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{platform.operator_metrics_port}/metrics").text
    found = re.search(r"^longtask_operator_maintenance_failures_total (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_refused_ttl_deletion_is_retried_until_the_task_is_gone(platform, kubectl, namespace, redis_client):
    policy, manifests = policies.refusing(
        namespace=namespace, label=REFUSE_DELETE_LABEL, operations=["DELETE"], resource="longtasks"
    )
    kubectl("apply", "-f", "-", input=manifests)
    try:
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps({
            "apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": "probe", "labels": {REFUSE_DELETE_LABEL: "1"}},
            "spec": {"task": "demo.noop", "pool": f"nobody-{uuid.uuid4().hex[:6]}"},
        }))  # fmt: skip
        helpers.poll(
            lambda: (
                "refused by a test policy"
                in kubectl("delete", "-n", namespace, "lt/probe", "--dry-run=server", check=False).stderr
            ),
            timeout=30,
            what="the policy to apply",
        )
        failures = _maintenance_failures(platform)
        uid = json.loads(kubectl("create", "-n", namespace, "-f", "-", "-o", "json", input=json.dumps({
            "apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": "doomed", "labels": {REFUSE_DELETE_LABEL: "1"}},
            "spec": {"task": "demo.noop", "ttlSecondsAfterFinished": 1},
        })).stdout)["metadata"]["uid"]  # fmt: skip
        lt.wait_phase(kubectl, namespace, "doomed", "Succeeded")
        helpers.poll(
            lambda: _maintenance_failures(platform) > failures, timeout=30, what="the TTL deletion refused"
        )
        assert lt.get(kubectl, namespace, "doomed")["metadata"]["uid"] == uid
        assert redis_client.zscore(names.EXPIRY, uid) is not None, "kept, to be tried again"
    finally:
        policies.remove(kubectl, policy)
    kubectl("wait", "-n", namespace, "lt/doomed", "--for=delete", "--timeout=60s")
    helpers.poll(lambda: not _keys_mentioning(redis_client, uid), timeout=10, what="its keys forgotten")


def test_a_task_cancelled_before_it_was_sent_is_deleted_at_its_ttl(
    platform, kubectl, namespace, redis_client
):
    uid = lt.create(
        kubectl,
        namespace,
        "never-sent",
        task="demo.noop",
        pool=f"nobody-{uuid.uuid4().hex[:6]}",
        cancel=True,
        ttlSecondsAfterFinished=3,
    )
    helpers.poll(
        lambda: lt.kinds(redis_client, uid) == ["cancelled"], timeout=30, what="it cancelled, unsent"
    )
    assert not redis_client.exists(names.current(uid)), "never sent"
    kubectl("wait", "-n", namespace, "lt/never-sent", "--for=delete", "--timeout=60s")
    helpers.poll(lambda: not _keys_mentioning(redis_client, uid), timeout=10, what="its keys forgotten")


def test_rejected_params_and_unknown_names_fail_clearly(platform, kubectl, namespace, redis_client):
    lt.create(kubectl, namespace, "typo", task="demo.sleep", params={"sconds": 1})
    lt.create(kubectl, namespace, "bad-value", task="demo.sleep", params={"steps": 0})
    lt.create(kubectl, namespace, "missing", task="no.such.task")
    for name, error_type, text in [
        ("typo", "InvalidParams", "sconds"),
        ("bad-value", "PermanentError", "steps >= 1"),
        ("missing", "UnknownTask", "no.such.task"),
    ]:
        status = lt.wait_phase(kubectl, namespace, name, "Failed")
        assert status["error"]["type"] == error_type and text in status["error"]["message"], status
        assert status["attempts"] == 1


def test_nonsense_never_breaks_the_operator(platform, kubectl, namespace, redis_client):
    lt.create(kubectl, namespace, "victim", task="demo.noop")
    lt.wait_phase(kubectl, namespace, "victim", "Succeeded")
    bogus = kubectl(
        "patch",
        "-n",
        namespace,
        "lt/victim",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Bogus", "progress": 400}}),
        check=False,
    )
    assert bogus.returncode != 0 and "status.phase" in bogus.stderr and "status.progress" in bogus.stderr
    kubectl(
        "patch",
        "-n",
        namespace,
        "lt/victim",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Running", "attempts": 99, "worker": "nobody"}}),
    )
    redis_client.xadd(names.STATUS_STREAM, {"event": "{not json"})
    redis_client.xadd(names.STATUS_STREAM, {"unexpected": "field"})

    lt.create(kubectl, namespace, "after", task="demo.sleep", params={"seconds": 0.3, "steps": 3})
    assert lt.wait_phase(kubectl, namespace, "after", "Succeeded")["progress"] == 100
    assert platform.cluster.child("operator").alive()
