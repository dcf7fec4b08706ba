"""Finished tasks expire, and bad input never breaks the operator.

Covers: ttlSecondsAfterFinished deletes a finished LongTask and every Redis key of it;
params the task rejects and an unknown task name end in a clear Failed without retries;
a status edited by hand to nonsense is rejected by the apiserver, a wrong-but-valid one is
tolerated; a malformed entry in the status stream is dropped; other tasks keep flowing.
"""

from __future__ import annotations

import json

import pytest

from longtask_contracts import names
from tests import helpers, lt

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
    assert _keys_mentioning(redis_client, uid) == []


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
