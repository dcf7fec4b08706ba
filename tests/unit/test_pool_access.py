"""Who may use which pool (longtask_contracts.poolaccess): the pure rules, table-driven.

Covers: label selectors as Kubernetes reads them (matchLabels, the four operators, `{}`
selects all, an unknown operator or In without values selects nothing); a pool no
WorkerPool claims is open; a claimed pool admits its own namespace, `{}` every namespace,
absent no other, a selector the namespaces whose labels (kubernetes.io/metadata.name
included) match; unknown labels make the verdict UNKNOWN only when they matter; nothing is
decided before the WorkerPools are listed; the older of two claims holds the pool
(creationTimestamp, then name) and the newer gets a Conflict condition, cleared once it
holds the pool; a refusal is confirmed against the live WorkerPool and Namespace (a lagging
watch never fails a task); conditions merge by type, never dropping another type, and keep
lastTransitionTime while the status stays; a WorkerPool never in conflict needs no write.
"""

from __future__ import annotations

from typing import Any

import pytest

from longtask_contracts import poolaccess

Outcome = poolaccess.Outcome


def workerpool(
    namespace: str,
    name: str,
    *,
    pool: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    selector: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"deployment": f"{name}-workers"}
    if pool is not None:
        spec["pool"] = pool
    if selector is not None:
        spec["namespaceSelector"] = selector
    obj: dict[str, Any] = {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "creationTimestamp": created,
            "resourceVersion": "1",
        },
        "spec": spec,
    }
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return obj


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def claims(*pools: dict[str, Any], namespaces: list[dict[str, Any]] | None = None) -> poolaccess.Claims:
    c = poolaccess.Claims()
    c.list_pools(list(pools))
    c.list_namespaces(namespaces if namespaces is not None else [])
    return c


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            {"team": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}, {"team": "a"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {"team": "a"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": "a"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "Gt", "values": ["1"]}]}, {"team": "2"}, False),
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "team", "operator": "Exists"}]},
            {"env": "prod"},
            False,
        ),
    ],
)
def test_label_selectors(selector, labels, expected):
    assert poolaccess.matches(selector, labels) is expected


def test_an_unclaimed_pool_is_open_to_every_namespace():
    c = claims(workerpool("b", "gpu"), namespaces=[namespace("a"), namespace("b")])
    assert c.verdict(namespace="a", pool="by-hand").outcome is Outcome.ALLOWED


@pytest.mark.parametrize(
    ("selector", "task_namespace", "expected"),
    [
        (None, "b", Outcome.ALLOWED),  # its own namespace, always
        (None, "a", Outcome.REFUSED),  # absent: its own namespace only
        ({}, "a", Outcome.ALLOWED),  # {}: every namespace
        ({"matchLabels": {"team": "a"}}, "a", Outcome.ALLOWED),
        ({"matchLabels": {"team": "a"}}, "c", Outcome.REFUSED),
        ({"matchLabels": {"kubernetes.io/metadata.name": "c"}}, "c", Outcome.ALLOWED),
        ({"matchLabels": {"team": "a"}}, "new", Outcome.UNKNOWN),  # labels not seen yet
        ({}, "new", Outcome.ALLOWED),  # ... which {} does not need
        (None, "new", Outcome.REFUSED),  # ... nor an absent selector
    ],
)
def test_a_claimed_pool_admits_what_its_selector_selects(selector, task_namespace, expected):
    c = claims(
        workerpool("b", "gpu", selector=selector),
        namespaces=[namespace("a", team="a"), namespace("b"), namespace("c", team="c")],
    )
    verdict = c.verdict(namespace=task_namespace, pool="gpu")
    assert verdict.outcome is expected
    if expected is Outcome.REFUSED:
        assert verdict.message == (
            f"pool 'gpu' is claimed by WorkerPool b/gpu, whose namespaceSelector does not admit "
            f"namespace {task_namespace!r}"
        )


def test_nothing_is_decided_before_the_workerpools_are_listed():
    c = poolaccess.Claims()
    assert c.verdict(namespace="a", pool="default").outcome is Outcome.UNKNOWN
    c.list_pools([])
    assert c.verdict(namespace="a", pool="default").outcome is Outcome.ALLOWED


def test_watch_events_change_the_verdict():
    c = claims(workerpool("b", "gpu"), namespaces=[namespace("a")])
    assert c.verdict(namespace="a", pool="gpu").outcome is Outcome.REFUSED
    c.pool_event("MODIFIED", workerpool("b", "gpu", selector={"matchLabels": {"team": "a"}}))
    assert c.verdict(namespace="a", pool="gpu").outcome is Outcome.REFUSED
    c.namespace_event("MODIFIED", namespace("a", team="a"))
    assert c.verdict(namespace="a", pool="gpu").outcome is Outcome.ALLOWED
    c.pool_event("DELETED", workerpool("b", "gpu"))
    assert c.verdict(namespace="a", pool="gpu").outcome is Outcome.ALLOWED  # unclaimed again
    c.namespace_event("DELETED", namespace("a"))
    assert "a" not in c.labels


def test_the_pool_is_spec_pool_else_the_workerpools_name():
    c = claims(workerpool("b", "workers", pool="gpu"), namespaces=[namespace("a")])
    assert c.verdict(namespace="a", pool="gpu").outcome is Outcome.REFUSED
    assert c.verdict(namespace="a", pool="workers").outcome is Outcome.ALLOWED


@pytest.mark.parametrize(
    ("first", "second", "holder"),
    [
        (("b", "x", "2026-01-01T00:00:00Z"), ("a", "y", "2026-01-02T00:00:00Z"), ("b", "x")),  # older
        (("b", "y", "2026-01-01T00:00:00Z"), ("a", "x", "2026-01-01T00:00:00Z"), ("a", "x")),  # then name
    ],
)
def test_the_older_of_two_claims_holds_the_pool(first, second, holder):
    pools = [workerpool(ns, name, pool="gpu", created=created) for ns, name, created in (first, second)]
    for order in (pools, pools[::-1]):
        held = claims(*order).held()["gpu"]
        assert (held.namespace, held.name) == holder


def test_the_holders_selector_decides_not_the_newer_ones():
    c = claims(
        workerpool("b", "old", pool="gpu", created="2026-01-01T00:00:00Z"),
        workerpool("a", "new", pool="gpu", created="2026-02-01T00:00:00Z", selector={}),
        namespaces=[namespace("a"), namespace("c")],
    )
    assert c.verdict(namespace="c", pool="gpu").outcome is Outcome.REFUSED
    assert c.verdict(namespace="a", pool="gpu").outcome is Outcome.REFUSED  # the newer's own namespace too


def test_the_newer_claim_gets_a_conflict_condition_and_loses_it_once_it_holds_the_pool():
    ready = {"type": "Ready", "status": "True", "reason": "Scaling", "message": "ok"}
    old = workerpool("b", "old", pool="gpu", created="2026-01-01T00:00:00Z", conditions=[ready])
    new = workerpool("a", "new", pool="gpu", created="2026-02-01T00:00:00Z", conditions=[ready])
    c = claims(old, new)
    due = c.conditions_due(now="2026-03-01T00:00:00Z")
    assert [obj["metadata"]["name"] for obj, _ in due] == ["new"]  # never in conflict: no write
    conditions = due[0][1]
    assert conditions[0] == ready, "other types are kept as they are"
    conflict = conditions[1]
    assert conflict["type"] == "Conflict" and conflict["status"] == "True"
    assert conflict["reason"] == "PoolClaimedElsewhere" and "WorkerPool b/old" in conflict["message"]
    assert conflict["lastTransitionTime"] == "2026-03-01T00:00:00Z"

    c.pool_event("MODIFIED", {**new, "status": {"conditions": conditions}})
    assert c.conditions_due(now="2026-03-02T00:00:00Z") == [], "written: nothing more to do"

    c.pool_event("MODIFIED", {**new, "status": {"conditions": [ready]}})  # another writer dropped it
    assert [obj["metadata"]["name"] for obj, _ in c.conditions_due(now="2026-03-02T00:00:00Z")] == ["new"]

    c.pool_event("MODIFIED", {**new, "status": {"conditions": conditions}})
    c.pool_event("DELETED", old)
    [(obj, cleared)] = c.conditions_due(now="2026-03-03T00:00:00Z")
    assert obj["metadata"]["name"] == "new"
    assert cleared[0] == ready
    assert cleared[1]["status"] == "False" and cleared[1]["reason"] == "PoolHeld"
    assert cleared[1]["lastTransitionTime"] == "2026-03-03T00:00:00Z"


def test_condition_changes_keep_the_transition_time_while_the_status_stays():
    before = [
        {"type": "Conflict", "status": "True", "reason": "R", "message": "old", "lastTransitionTime": "T0"},
        {"type": "Ready", "status": "True"},
    ]
    wanted = {"type": "Conflict", "status": "True", "reason": "R", "message": "new"}
    after = poolaccess.condition_changes(before, wanted, now="T1")
    assert after == [
        {"type": "Ready", "status": "True"},
        {"type": "Conflict", "status": "True", "reason": "R", "message": "new", "lastTransitionTime": "T0"},
    ]
    assert poolaccess.condition_changes(after, wanted, now="T2") is None


def test_a_refusal_is_confirmed_against_what_was_read_just_now():
    """A watch that lags must not fail a task: the live WorkerPool and Namespace decide."""
    c = claims(workerpool("b", "gpu"), namespaces=[namespace("a", team="a")])
    refused = c.verdict(namespace="a", pool="gpu")
    assert refused.outcome is Outcome.REFUSED

    def confirm(live_pool: dict[str, Any] | None, live_namespace: dict[str, Any] | None) -> Outcome:
        return poolaccess.confirmed(
            refused, namespace="a", pool="gpu", live_pool=live_pool, live_namespace=live_namespace
        ).outcome

    assert confirm(workerpool("b", "gpu"), namespace("a", team="a")) is Outcome.REFUSED
    admitting = workerpool("b", "gpu", selector={"matchLabels": {"team": "a"}})
    assert confirm(admitting, namespace("a", team="a")) is Outcome.UNKNOWN  # the selector changed
    assert confirm(workerpool("b", "gpu", pool="other"), namespace("a")) is Outcome.UNKNOWN  # let go
    assert confirm(None, namespace("a")) is Outcome.UNKNOWN  # deleted
    assert confirm(workerpool("b", "gpu"), None) is Outcome.UNKNOWN
    allowed = c.verdict(namespace="b", pool="gpu")
    assert (
        poolaccess.confirmed(allowed, namespace="b", pool="gpu", live_pool=None, live_namespace=None)
        == allowed
    )
