"""Helpers for tests that make LongTaskSchedules with kubectl and read them back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from longtask_contracts import names

Kubectl = Callable[..., Any]
# A schedule that is not due for years (Feb 29 at midnight): nothing but a trigger makes runs.
RARE = "0 0 29 2 *"


def create(kubectl: Kubectl, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """Create a LongTaskSchedule with kubectl (RARE, a demo.noop template labelled team=search,
    unless `spec` says otherwise); the object as the apiserver holds it."""
    spec.setdefault("schedule", RARE)
    spec.setdefault("template", {"metadata": {"labels": {"team": "search"}}, "spec": {"task": "demo.noop"}})
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.SCHEDULE_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
    out = kubectl("create", "-n", namespace, "-f", "-", "-o", "json", input=json.dumps(body))
    return dict(json.loads(out.stdout))


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    out = kubectl("get", "-n", namespace, f"{names.SCHEDULE_PLURAL}/{name}", "-o", "json")
    return dict(json.loads(out.stdout))
