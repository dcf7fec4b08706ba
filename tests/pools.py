"""Helpers for the worker-pool tests: many LongTasks in one request, a timed kubectl watch."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from longtask_contracts import names, poolaccess
from longtask_dev import platform as platform_mod
from tests import lt


def unique_pool() -> str:
    """Queues are cluster-wide, so each test serves a pool nobody else uses."""
    return f"p-{uuid.uuid4().hex[:8]}"


def create_many(kubectl: lt.Kubectl, namespace: str, prefix: str, count: int, **spec: Any) -> list[str]:
    """Create `count` LongTasks `<prefix>-<i>` with one kubectl call; returns their names."""
    items = [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": f"{prefix}-{i}"},
            "spec": spec,
        }
        for i in range(count)
    ]
    kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    return [item["metadata"]["name"] for item in items]


def apply_pool(platform: platform_mod.Platform, namespace: str, **options: Any) -> tuple[str, str]:
    """Apply examples/workerpool.yaml made for a fresh pool; returns (pool, deployment)."""
    pool = unique_pool()
    manifests = platform_mod.worker_pool_manifests(pool=pool, **options)
    platform.apply_worker_pool(manifests, namespace=namespace)
    return pool, manifests[0]["metadata"]["name"]


def worker_processes(pool: str) -> list[int]:
    """Pids of the `longtask worker --pool <pool>` main processes running on this machine
    (Celery's forked children, whose parent is one of them, are not counted)."""
    matching: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
            stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        if b"worker" in argv and b"--pool" in argv and pool.encode() in argv:
            matching[int(entry)] = int(fields[1])
    return sorted(pid for pid, parent in matching.items() if parent not in matching)


def open_claims() -> poolaccess.Claims:
    """Claims as the watches give them once listed when no WorkerPool claims the pools a test
    uses: every namespace may use them (what a sender is given outside the operator/gateway)."""
    claims = poolaccess.Claims()
    claims.list_pools([])
    return claims
