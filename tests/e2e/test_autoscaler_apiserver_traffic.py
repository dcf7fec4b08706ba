"""The autoscaler's apiserver traffic does not grow with its decisions.

Real apiserver (its own request counter, apiserver_request_total, is the measure), real
operator, worker Deployments run by the local node.

Covers:
- an idle WorkerPool, over ten autoscaler passes (counted by the operator's
  longtask_autoscaler_passes_total): no Deployment GET, no scale or pod PATCH, at most one
  WorkerPool status write (counted for every client by the apiserver, once no earlier
  test's WorkerPool is being deleted);
- a status write keeps a condition type the autoscaler does not own (another writer's,
  e.g. poolclaims' Conflict, or another controller's) and a decision still scales the
  Deployment from the watched objects.
(Scaling from watched Deployments and pods is covered end to end by test_autoscaling.py.)
"""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client import parser

from longtask_dev import apirequests
from tests import helpers, lt, pools

pytestmark = pytest.mark.cluster

PASSES = 10


def _passes(platform) -> float:
    text = httpx.get(f"http://127.0.0.1:{platform.operator_metrics_port}/metrics").text
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "longtask_autoscaler_passes_total":
                return float(sample.value)
    raise AssertionError("no longtask_autoscaler_passes_total on the operator")


def _workerpool(kubectl, namespace: str, pool: str) -> dict:
    return json.loads(kubectl("get", "-n", namespace, f"wp/{pool}", "-o", "json").stdout)


def _settled(kubectl, namespace: str, pool: str) -> dict | None:
    """The WorkerPool's status once the autoscaler wrote it (Ready, 0 desired)."""
    status = _workerpool(kubectl, namespace, pool).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    if ready and ready[0]["status"] == "True" and status.get("desiredReplicas") == 0:
        return status
    return None


def _no_pool_being_deleted(kubectl) -> bool:
    """No WorkerPool left by an earlier test in a namespace being deleted (the namespace
    controller's deletions would end in a status write of that pool: DeploymentNotFound)."""
    terminating = {
        ns["metadata"]["name"]
        for ns in json.loads(kubectl("get", "namespaces", "-o", "json").stdout)["items"]
        if ns.get("status", {}).get("phase") == "Terminating"
    }
    pools_ = json.loads(kubectl("get", "workerpools", "-A", "-o", "json").stdout)["items"]
    return not any(wp["metadata"]["namespace"] in terminating for wp in pools_)


def test_an_idle_pool_costs_no_reads_and_at_most_one_write(platform, cluster, kubectl, namespace):
    pool, _ = pools.apply_pool(platform, namespace, min_replicas=0, max_replicas=2, concurrency=1)
    helpers.poll(lambda: _settled(kubectl, namespace, pool), timeout=30, what="the WorkerPool's first status")
    helpers.poll(lambda: _no_pool_being_deleted(kubectl), timeout=120, what="earlier tests' WorkerPools gone")

    before = apirequests.snapshot(cluster)
    start = _passes(platform)
    helpers.poll(lambda: _passes(platform) >= start + PASSES, timeout=60, what=f"{PASSES} autoscaler passes")
    served = apirequests.delta(
        before, apirequests.snapshot(cluster), resources={"deployments", "pods", "workerpools"}
    )
    print(f"\nidle pool, {PASSES} autoscaler passes: {dict(sorted(served.items()))}")

    # Counted for every client: these are requests only the operator makes here (the node
    # agent and the controllers list and watch pods and Deployments too, so LIST and WATCH
    # are not asserted; the informers' own are one each per cache, at their start).
    assert served[apirequests.Key("GET", "deployments")] == 0, "decided from the watched Deployment"
    assert served[apirequests.Key("PATCH", "deployments", "scale")] == 0
    assert served[apirequests.Key("PATCH", "pods")] == 0
    assert served[apirequests.Key("PATCH", "workerpools", "status")] <= 1


def test_a_decision_keeps_conditions_the_autoscaler_does_not_own(platform, kubectl, namespace):
    pool, deployment = pools.apply_pool(platform, namespace, min_replicas=0, max_replicas=2, concurrency=1)
    status = helpers.poll(
        lambda: _settled(kubectl, namespace, pool), timeout=30, what="the WorkerPool's first status"
    )
    foreign = {
        # A type nobody in the operator owns (poolclaims.py owns Conflict and would correct it).
        "type": "ExampleReady",
        "status": "True",
        "reason": "SetByHand",
        "message": "written by another controller",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    kubectl(
        "patch", "-n", namespace, f"wp/{pool}", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"conditions": [*status["conditions"], foreign]}}),
    )  # fmt: skip

    lt.create(kubectl, namespace, "work", task="demo.noop", pool=pool)
    after = helpers.poll(
        lambda: (s := _workerpool(kubectl, namespace, pool)["status"]).get("lastScaleReason") and s,
        timeout=60,
        what="a scale decision in the WorkerPool's status",
    )
    assert after["lastScaleReason"].startswith("0 -> 1"), after
    kinds = [c["type"] for c in after["conditions"]]
    assert kinds.count("Ready") == 1 and kinds.count("ScalingLimited") == 1, kinds
    assert foreign in after["conditions"], "another writer's condition is kept as it was"
    replicas = json.loads(kubectl("get", "-n", namespace, f"deployment/{deployment}", "-o", "json").stdout)
    assert replicas["spec"]["replicas"] == 1
    lt.wait_phase(kubectl, namespace, "work", "Succeeded", timeout=90)
