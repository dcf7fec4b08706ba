"""One task never stalls the status of the others, and no terminal event is trimmed away.

Covers:
- a task whose error and progress messages are 2 MB ends Failed with bounded text in its
  status (the full text stays in its event stream), and a task created after it reaches
  Succeeded in its CR;
- a task whose status writes the apiserver keeps refusing (a ValidatingAdmissionPolicy
  here) is parked with a Warning Event and a metric while other tasks' statuses keep
  flowing, and is written once the apiserver accepts it again;
- an operator stopped while 200,000 status entries pass brings every LongTask to its true
  terminal phase after it restarts, and then trims what it read.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from longtask_contracts import events, names
from tests import helpers, lt, policies

pytestmark = pytest.mark.cluster
REJECT_LABEL = "test.longtask.io/reject-status"


def test_two_megabyte_messages_are_bounded_and_others_flow(platform, kubectl, namespace, redis_client):
    uid = lt.create(
        kubectl, namespace, "huge", task="demo.fail", params={"permanent": True, "message_bytes": 2_000_000}
    )
    status = lt.wait_phase(kubectl, namespace, "huge", "Failed")
    assert status["error"]["type"] == "PermanentError"
    assert len(status["error"]["message"]) <= 4096
    assert "[2000000 characters; the full text is in the task's event stream]" in status["error"]["message"]
    assert len(json.dumps(status)) < 64 * 1024
    failed = [e for e in lt.stream(redis_client, uid) if e.kind is events.Kind.FAILED]
    assert len(failed[0].error["message"]) == 2_000_000, "the event stream keeps the full text"
    lt.create(kubectl, namespace, "after", task="demo.noop")
    lt.wait_phase(kubectl, namespace, "after", "Succeeded")


def test_a_task_whose_status_writes_fail_is_parked_and_others_flow(platform, kubectl, namespace):
    policy, manifests = policies.refusing(
        namespace=namespace, label=REJECT_LABEL, operations=["UPDATE"], resource="longtasks/status"
    )
    kubectl("apply", "-f", "-", input=manifests)
    try:
        # The policy is in force once a probe object's status write is refused.
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps({
            "apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": "probe", "labels": {REJECT_LABEL: "1"}},
            "spec": {"task": "demo.noop", "pool": f"nobody-{uuid.uuid4().hex[:6]}"},
        }))  # fmt: skip
        policies.wait_in_force(kubectl, namespace=namespace, name="probe")
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps({
            "apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": "stuck", "labels": {REJECT_LABEL: "1"}},
            "spec": {"task": "demo.noop"},
        }))  # fmt: skip
        helpers.poll(
            lambda: "StatusWriteFailed" in kubectl(
                "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=stuck",
                "-o", "jsonpath={.items[*].reason}",
            ).stdout,
            timeout=30,
            what="a StatusWriteFailed Event on the stuck task",
        )  # fmt: skip
        metrics = httpx.get(f"http://127.0.0.1:{platform.operator_metrics_port}/metrics").text
        parked = re.search(r"^longtask_operator_status_parked (\S+)$", metrics, re.M)
        assert parked is not None and float(parked.group(1)) >= 1
        # Tasks created after it flow as usual.
        for i in range(5):
            lt.create(kubectl, namespace, f"free-{i}", task="demo.noop")
        for i in range(5):
            lt.wait_phase(kubectl, namespace, f"free-{i}", "Succeeded", timeout=30)
        assert lt.status(kubectl, namespace, "stuck").get("phase") in (None, "Pending")
    finally:
        policies.remove(kubectl, policy)
    # Accepted again: the parked task's status catches up on its next try.
    lt.wait_phase(kubectl, namespace, "stuck", "Succeeded", timeout=90)


def test_an_operator_down_while_200000_entries_pass_loses_no_terminal_event(
    platform, kubectl, namespace, redis_client
):
    uids = [
        lt.create(kubectl, namespace, f"slow-{i}", task="demo.sleep", params={"seconds": 3, "steps": 3})
        for i in range(5)
    ]
    for i in range(5):
        lt.wait_phase(kubectl, namespace, f"slow-{i}", "Running", timeout=60)
    platform.kill_operator()
    try:
        # Chatter of a task that is gone, far past the old 200,000-entry cap.
        filler = events.TaskEvent(
            kind=events.Kind.PROGRESS, namespace=namespace, name="gone", uid=str(uuid.uuid4()), progress=1
        ).encode()
        for _ in range(20):
            pipe = redis_client.pipeline(transaction=False)
            for _ in range(10_000):
                pipe.xadd(names.STATUS_STREAM, filler)
            pipe.execute()
        helpers.poll(
            lambda: all(redis_client.exists(names.done(uid)) for uid in uids),
            timeout=60,
            what="the tasks to finish while the operator is down",
        )
        assert redis_client.xlen(names.STATUS_STREAM) > 200_000, "nothing trimmed while unread"
    finally:
        platform.start_operator()
    for i in range(5):
        lt.wait_phase(kubectl, namespace, f"slow-{i}", "Succeeded", timeout=120)
    # Trimmed once read and older than the minute kept for the gateway's streams.
    helpers.poll(
        lambda: redis_client.xlen(names.STATUS_STREAM) < 50_000,
        timeout=150,
        what="the operator to trim what it has read",
    )
