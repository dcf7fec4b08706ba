"""Two operators against one cluster: one leads on a Lease, the other waits, and no task is
lost or run twice as leadership moves.

Covers: with a second operator started beside the platform's, exactly one holds the Lease
(`kubectl get lease -A`: a Lease named longtask-..., holderIdentity the leader; the
metric longtask_operator_leader 1 on it, 0 on the standby, whose /healthz is healthy and
lists only the elector); 20 tasks created while both
run are each queued once and started once (one attempt each); the leader SIGKILLed: 20
tasks created right after all succeed, each started once, and the Lease names the other
operator; that leader stopped with SIGTERM releases the Lease, so the restarted first
operator takes over although the Lease the stopped one wrote would not expire for an hour
(so no timing is needed to tell a release from an expiry).
"""

from __future__ import annotations

import json

import httpx
import pytest

from longtask_dev import platform as platform_mod
from tests import helpers, lt
from tests.drills import conftest as drills

pytestmark = pytest.mark.cluster

SECOND = "operator-2"


def holders(kubectl) -> dict[str, str]:
    """The holderIdentity of every Lease whose name has `longtask` in it, by namespace/name
    (the dev node's own heartbeat Lease, in kube-node-lease, left out)."""
    leases = json.loads(kubectl("get", "lease", "-A", "-o", "json").stdout)["items"]
    return {
        f"{lease['metadata']['namespace']}/{lease['metadata']['name']}": lease["spec"].get(
            "holderIdentity", ""
        )
        for lease in leases
        if "longtask" in lease["metadata"]["name"] and lease["metadata"]["namespace"] != "kube-node-lease"
    }


def leads(platform: platform_mod.Platform, name: str) -> bool | None:
    return platform_mod.operator_leads(platform.operator_metrics_urls[name])


def quiet_tail(child) -> str:
    return "\n".join(line for line in child.log_tail(400).splitlines() if " sent to " not in line)


def run_twenty(kubectl, redis_client, namespace: str, prefix: str) -> None:
    """Create 20 tasks; each must succeed, queued once and started once (one attempt)."""
    uids = {
        f"{prefix}{i:02d}": lt.create(
            kubectl, namespace, f"{prefix}{i:02d}", task="demo.sleep", pool=drills.DRILL_POOL,
            params={"seconds": 0.5, "steps": 2},
        )
        for i in range(20)
    }  # fmt: skip
    kubectl(
        "wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "--timeout=180s",
        *(f"lt/{name}" for name in uids),
    )  # fmt: skip
    for name, uid in uids.items():
        kinds = lt.kinds(redis_client, uid)
        assert kinds.count("queued") == 1, (name, kinds)
        assert lt.starts(redis_client, uid) == 1, (name, kinds)
        status = lt.status(kubectl, namespace, name)
        assert status["attempts"] == 1, (name, status)
        assert len(status.get("attemptHistory") or []) <= 1, (name, status)


def test_one_leader_takeover_on_kill_and_release_on_stop(
    platform, cluster, kubectl, namespace, redis_client, drill_workers
):
    first = platform.cluster.child("operator")
    assert leads(platform, "operator") is True
    # The second writes the Lease for an hour once it leads: only its release can end that.
    second = platform.start_operator(
        name=SECOND, standby=True, extra_env={"LONGTASK_LEADER_LEASE_SECONDS": "3600"}
    )
    try:
        # -- both run: exactly one holds the Lease, the first ---------------------------
        lease = holders(kubectl)
        assert list(lease.values()) == ["dev-operator"], lease
        assert leads(platform, SECOND) is False
        # A standby is healthy (not restarted for waiting) and runs no loop but the elector.
        health = httpx.get(platform.operator_health_urls[SECOND], timeout=10)
        assert health.status_code == 200 and health.json()["loops"] == ["leader-election"], health.text
        run_twenty(kubectl, redis_client, namespace, "both")
        assert holders(kubectl) == lease and leads(platform, SECOND) is False

        # -- the leader SIGKILLed: the standby takes over, nothing lost or run twice ------
        platform.kill_operator("operator")
        assert not first.alive()
        run_twenty(kubectl, redis_client, namespace, "after")
        assert holders(kubectl) == dict.fromkeys(lease, f"dev-{SECOND}")
        assert leads(platform, SECOND) is True

        # -- that leader stopped cleanly (SIGTERM): it releases the Lease, and the first
        # operator, restarted as a standby, takes over at once, not an hour later
        platform.start_operator(standby=True)
        second.stop(timeout=60)  # SIGTERM (SIGKILL only after a minute: a release must be seen)
        cluster.children.remove(second)
        assert second.popen is not None and second.popen.returncode == 0, quiet_tail(second)
        assert "released the Lease" in second.log_tail(200)
        helpers.poll(lambda: leads(platform, "operator"), timeout=60, what="the first operator to lead again")
        assert holders(kubectl) == dict.fromkeys(lease, "dev-operator")
        run_twenty(kubectl, redis_client, namespace, "again")
    finally:  # leave the platform as it was: its one operator leading
        if second in cluster.children:
            platform.stop_child(second)
        if not any(c.name == "operator" for c in cluster.children):
            platform.start_operator()
