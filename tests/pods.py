"""Helpers for tests of the local node: pod manifests, reading pods and Events, finding their processes."""

from __future__ import annotations

import json
import os
from typing import Any

from longtask_dev import cluster as cluster_mod
from tests import helpers

Obj = dict[str, Any]


def python_pod(name: str, script: str, *, args: list[str] | None = None, **spec: Any) -> Obj:
    """A Pod whose one container `app` runs `python -c script` (the image is ignored by the node)."""
    container: Obj = {"name": "app", "image": "python:3.11", "command": ["python", "-c", script]}
    container.update(spec.pop("container", {}))
    if args is not None:
        container["args"] = args
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **spec},
    }


def apply(cluster: cluster_mod.Cluster, namespace: str, *manifests: Obj) -> None:
    body = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def get(cluster: cluster_mod.Cluster, namespace: str, name: str) -> Obj | None:
    out = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    pod: Obj = json.loads(out.stdout)
    return pod


def listed(cluster: cluster_mod.Cluster, namespace: str, selector: str) -> list[Obj]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    items: list[Obj] = json.loads(out.stdout)["items"]
    return items


def wait(
    cluster: cluster_mod.Cluster, namespace: str, name: str, what: str, check: Any, timeout: float = 60
) -> Obj:
    """Poll the pod until `check(pod)` is true; return the pod."""

    def probe() -> Obj | None:
        pod = get(cluster, namespace, name)
        return pod if pod is not None and check(pod) else None

    found: Obj = helpers.poll(probe, timeout=timeout, what=f"pod {name}: {what}", interval=0.2)
    return found


def phase(pod: Obj) -> str:
    return str(pod.get("status", {}).get("phase", ""))


def condition(pod: Obj, kind: str) -> str:
    for c in pod.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return ""


def container_status(pod: Obj, name: str = "app") -> Obj:
    for s in pod.get("status", {}).get("containerStatuses") or []:
        if s["name"] == name:
            result: Obj = s
            return result
    return {}


def events(cluster: cluster_mod.Cluster, namespace: str, pod: str) -> list[Obj]:
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}", "-o", "json"
    )
    items: list[Obj] = json.loads(out.stdout)["items"]
    return items


def shim_pid(pod: Obj, name: str = "app") -> int:
    """The host pid of the container's shim (its containerID is longtask://<pid>)."""
    return int(container_status(pod, name)["containerID"].removeprefix("longtask://"))


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return [p for p in tree if helpers.process_alive(p)]
