"""Helpers for tests that drive LongTasks with kubectl and read their Redis state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from longtask_contracts import events, names

Kubectl = Callable[..., Any]


def create(kubectl: Kubectl, namespace: str, name: str, **spec: Any) -> str:
    """Create a LongTask with kubectl; returns its uid."""
    body = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": name}, "spec": spec}
    out = kubectl(
        "create", "-n", namespace, "-f", "-", "-o", "jsonpath={.metadata.uid}", input=json.dumps(body)
    )
    return str(out.stdout)


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl("get", "-n", namespace, f"lt/{name}", "-o", "json").stdout)
    return obj


def status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(kubectl, namespace, name).get("status") or {})


def wait_phase(kubectl: Kubectl, namespace: str, name: str, phase: str, timeout: int = 60) -> dict[str, Any]:
    kubectl(
        "wait",
        "-n",
        namespace,
        f"lt/{name}",
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"--timeout={timeout}s",
    )
    return status(kubectl, namespace, name)


def stream(client: redis.Redis, uid: str) -> list[events.TaskEvent]:
    """Every event of a task, in order, from its Redis stream."""
    return [events.TaskEvent.decode(fields) for _, fields in client.xrange(names.events_stream(uid))]


def kinds(client: redis.Redis, uid: str) -> list[str]:
    return [e.kind.value for e in stream(client, uid)]


def starts(client: redis.Redis, uid: str) -> int:
    return sum(e.kind == events.Kind.STARTED for e in stream(client, uid))
