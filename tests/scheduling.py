"""Helpers for tests of LongTaskSchedules: apply one, read it and its runs with kubectl."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, TypeVar

from longtask_contracts import names, phases

Kubectl = Callable[..., Any]
T = TypeVar("T")


def apply(kubectl: Kubectl, namespace: str, name: str, *, check: bool = True, **spec: Any) -> Any:
    """kubectl apply a LongTaskSchedule (spec fields as given); the kubectl result."""
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.SCHEDULE_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=check)


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl("get", "-n", namespace, f"lts/{name}", "-o", "json").stdout)
    return obj


def runs(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    """The schedule's runs (LongTasks labelled with it), oldest scheduled first."""
    out = kubectl("get", "-n", namespace, "lt", "-l", f"{names.SCHEDULE_LABEL}={name}", "-o", "json").stdout
    return sorted(json.loads(out)["items"], key=scheduled_at)


def scheduled_at(run: dict[str, Any]) -> datetime.datetime:
    return time(run["metadata"]["annotations"][names.SCHEDULED_AT_ANNOTATION])


def time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def active(run: dict[str, Any]) -> bool:
    return (run.get("status") or {}).get("phase") not in {p.value for p in phases.TERMINAL}


def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events on the schedule."""
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return [e for e in json.loads(out)["items"] if e["involvedObject"]["kind"] == names.SCHEDULE_KIND]


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def only_if(value: T, wanted: Callable[[T], Any]) -> T | None:
    """`value` if `wanted(value)`, else None (for helpers.poll)."""
    return value if wanted(value) else None
