"""Pure helpers of the autoscaler: what a pool's Deployment and pods say (tasks per worker
pod, pod-deletion costs), the WorkerPool's status conditions, and which status changes
are worth a write now.

It reads only the objects it is given: it must not talk to Kubernetes or Redis, nor decide
a pool's size (scaling.py does).
"""

from __future__ import annotations

import datetime
import shlex
from typing import Any

from longtask_contracts import names

# The condition types the autoscaler writes. Any other type on a WorkerPool (e.g. Conflict,
# written by another part of the operator) is someone else's: kept as last seen, never
# dropped nor changed.
OWNED_CONDITIONS = ("Ready", "ScalingLimited")
# Status fields that change with a decision or the spec: written at once. The rest (the
# counts, the Deployment's replicas, condition messages) at most every status interval.
_PROMPT_FIELDS = ("pool", "observedGeneration", "desiredReplicas", "lastScaleTime", "lastScaleReason")

_DEFAULT_CONCURRENCY = 2  # the worker's own default (longtask_worker.settings)
_BUSY_COST = 1000


def deletion_costs(pods: list[dict[str, Any]], busy: dict[str, int]) -> dict[str, str]:
    """The pod-deletion-cost each pod should carry, for the pods whose annotation differs."""
    wanted = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        name = meta.get("name", "")
        cost = str(_BUSY_COST + busy[name]) if busy.get(name) else "0"
        if (meta.get("annotations") or {}).get(names.POD_DELETION_COST, "0") != cost:  # absent = 0
            wanted[name] = cost
    return wanted


def worker_concurrency(deployment: dict[str, Any]) -> int:
    """Tasks one worker pod runs at once: LONGTASK_CONCURRENCY or --concurrency/-c of its
    first container, else the worker's default."""
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or [{}]
    container = containers[0]
    for env in container.get("env") or []:
        if env.get("name") == "LONGTASK_CONCURRENCY" and str(env.get("value", "")).isdigit():
            return max(1, int(env["value"]))
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if len(argv) == 1:
        argv = shlex.split(argv[0])
    for i, arg in enumerate(argv):
        value = None
        if arg in ("--concurrency", "-c") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--concurrency="):
            value = arg.split("=", 1)[1]
        if value is not None and value.isdigit():
            return max(1, int(value))
    return _DEFAULT_CONCURRENCY


def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    """A WorkerPool status condition (its message cut to what the CRD allows)."""
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message[:1024]}


def keep_transition_times(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in old}
    now = now_rfc3339()
    result = []
    for cond in new:
        prior = before.get(cond["type"])
        same = prior is not None and prior.get("status") == cond["status"]
        result.append(
            {**cond, "lastTransitionTime": prior.get("lastTransitionTime", now) if same and prior else now}
        )
    return result


def owned(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions of the types the autoscaler writes (OWNED_CONDITIONS)."""
    return [c for c in conditions if c.get("type") in OWNED_CONDITIONS]


def merged_conditions(ours: list[dict[str, Any]], seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The whole conditions list to write: ours (every owned type we still report), then
    every other type exactly as last seen on the object."""
    return [*ours, *(c for c in seen if c.get("type") not in OWNED_CONDITIONS)]


def status_changes(written: dict[str, Any], wanted: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The fields of `wanted` that differ from `written` (what the apiserver has; both with
    owned conditions only), and whether they are worth a write now: a decision or spec
    field, or an owned condition whose type, status or reason changed. Counts and messages
    alone can wait for the status interval."""
    changed = {k: v for k, v in wanted.items() if written.get(k) != v}
    prompt = any(k in changed for k in _PROMPT_FIELDS)
    if "conditions" in changed:
        prompt = prompt or _gist(written.get("conditions") or []) != _gist(wanted["conditions"])
    return changed, prompt


def _gist(conditions: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    return [(c.get("type"), c.get("status"), c.get("reason")) for c in conditions]


def now_rfc3339() -> str:
    """Now, as Kubernetes writes times in statuses."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
