"""What the autoscaler reads off a Deployment and writes on its pods (pure helpers).

Covers: the worker's concurrency as tasksPerReplica's default (env, --concurrency, -c,
--concurrency=N, a shell-string command, the default); pod-deletion-cost (idle 0, busy
1000 + attempts, only pods whose annotation differs, terminating pods left alone); the
queue's Redis lists, one per priority, most urgent first; which WorkerPool status changes
are written at once and which wait for the status interval; conditions of types the
autoscaler does not own kept as they are.
"""

from __future__ import annotations

import pytest

from longtask_contracts import names
from longtask_operator import pooldata


def deployment(container: dict[str, object]) -> dict[str, object]:
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"env": [{"name": "LONGTASK_CONCURRENCY", "value": "4"}]}, 4),
        ({"command": ["longtask", "worker", "--concurrency", "6"]}, 6),
        ({"command": ["longtask"], "args": ["worker", "-c", "3"]}, 3),
        ({"args": ["worker", "--concurrency=5"]}, 5),
        ({"command": ["sh", "-c"], "args": ["longtask worker -c 7"]}, 2),  # not parsed: a shell script
        ({"command": ["longtask worker -c 7"]}, 7),  # one string: split like a shell
        ({"env": [{"name": "LONGTASK_CONCURRENCY", "valueFrom": {}}]}, 2),
        ({}, 2),
    ],
)
def test_worker_concurrency(container, expected):
    assert pooldata.worker_concurrency(deployment(container)) == expected


def pod(name: str, cost: str | None = None, terminating: bool = False) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if cost is not None:
        meta["annotations"] = {names.POD_DELETION_COST: cost}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_deletion_costs_mark_busy_pods_expensive_and_touch_only_what_differs():
    pods = [
        pod("idle-new"),
        pod("idle-was-busy", "1002"),
        pod("busy", "0"),
        pod("busy-ok", "1001"),
        pod("gone", terminating=True),
    ]
    costs = pooldata.deletion_costs(pods, {"busy": 3, "busy-ok": 1, "gone": 1, "elsewhere": 2})
    assert costs == {"idle-was-busy": "0", "busy": "1003"}  # no annotation means 0 already


def test_queue_lists_cover_every_priority_most_urgent_first():
    lists = names.queue_lists("gpu")
    assert len(lists) == 10
    assert lists[0] == "longtask.gpu"
    assert lists[1] == "longtask.gpu\x06\x161"
    # kombu serves step 0 first; LongTask priority 9 is the most urgent.
    assert names.transport_priority(9) == 0
    assert names.transport_priority(0) == 9


def test_the_pool_label_is_capped(monkeypatch):
    from longtask_operator import metrics

    monkeypatch.setattr(metrics, "_pools", set())
    labels = [metrics.pool_label(f"pool-{i}") for i in range(metrics.MAX_POOLS + 10)]
    assert len(set(labels)) == metrics.MAX_POOLS + 1
    assert labels[-1] == "other"
    assert metrics.pool_label("pool-0") == "pool-0", "a known pool keeps its series"


def _cond(kind: str, status: str = "True", reason: str = "Scaling", message: str = "m") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


WRITTEN = {
    "pool": "p",
    "queued": 0,
    "running": 0,
    "desiredReplicas": 1,
    "observedGeneration": 1,
    "conditions": [_cond("Ready"), _cond("ScalingLimited", "False", "WithinRange")],
}


@pytest.mark.parametrize(
    ("update", "changed", "prompt"),
    [
        ({}, set(), False),  # nothing changed: nothing to write
        ({"queued": 5, "running": 2}, {"queued", "running"}, False),  # counts wait
        ({"conditions": [_cond("Ready", message="new"), WRITTEN["conditions"][1]]}, {"conditions"}, False),
        ({"desiredReplicas": 2}, {"desiredReplicas"}, True),  # a decision
        ({"observedGeneration": 2}, {"observedGeneration"}, True),  # the spec changed
        ({"conditions": [_cond("Ready", "False", "DeploymentNotFound")]}, {"conditions"}, True),
        (
            {"conditions": [_cond("Ready"), _cond("ScalingLimited", "True", "TooManyTasks")]},
            {"conditions"},
            True,
        ),
    ],
)
def test_status_changes_write_decisions_at_once_and_counts_later(update, changed, prompt):
    wanted = {**WRITTEN, **update}
    diff, now = pooldata.status_changes(WRITTEN, wanted)
    assert set(diff) == changed
    assert now is prompt


def test_merged_conditions_keep_other_types_as_seen():
    ours = [_cond("Ready", "False", "DeploymentNotFound")]
    conflict = _cond("Conflict", "True", "PoolClaimed")
    seen = [_cond("Ready"), conflict, _cond("ScalingLimited", "False", "WithinRange")]
    assert pooldata.merged_conditions(ours, seen) == [ours[0], conflict]
    assert pooldata.owned(seen) == [seen[0], seen[2]]
