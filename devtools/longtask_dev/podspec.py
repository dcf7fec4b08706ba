"""What the node agent reads out of a pod spec and writes into a pod status; pure, no I/O.

Environment resolution (env, envFrom, valueFrom, `$(VAR)` expansion) follows the kubelet;
so do the pod phase, the conditions and the container statuses built from plain facts
about the processes. Secrets and ConfigMaps arrive through a lookup function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
# (kind "Secret" | "ConfigMap", name) -> its data, or None if it does not exist.
Lookup = Callable[[str, str], Mapping[str, str] | None]

SUPPORTED_VOLUMES = ("emptyDir", "projected", "secret", "configMap", "downwardAPI", "hostPath")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_BACKOFF_BASE, _BACKOFF_CAP = 1.0, 30.0


class ConfigError(Exception):
    """The pod references something that is missing (CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubelet `$(VAR)` expansion: defined names are replaced, `$$` is `$`, the rest stays."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VAR.sub(one, text)


def field_ref(pod: Obj, path: str, *, host_ip: str) -> str:
    """The downward API value of `path` (metadata.name, metadata.labels['x'], status.podIP ...)."""
    meta, spec = pod["metadata"], pod["spec"]
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return str((meta.get(keyed[1]) or {}).get(keyed[2], ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": host_ip,
        "status.hostIP": host_ip,
    }
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef {path!r}")
    return str(simple[path])


def _key_ref(ref: Obj, kind: str, lookup: Lookup) -> str | None:
    data = lookup(kind, ref["name"])
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]]


def container_env(
    pod: Obj, container: Obj, *, lookup: Lookup, base: Mapping[str, str], host_ip: str
) -> dict[str, str]:
    """The container's environment: `base`, then envFrom in order, then env (later wins)."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key not in source:
                continue
            data = lookup(kind, source[key]["name"])
            if data is None:
                if source[key].get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{source[key]["name"]}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        value: str | None
        if "valueFrom" not in var:
            value = expand(var.get("value", ""), env)
        else:
            source = var["valueFrom"]
            if "fieldRef" in source:
                value = field_ref(pod, source["fieldRef"]["fieldPath"], host_ip=host_ip)
            elif "secretKeyRef" in source:
                value = _key_ref(source["secretKeyRef"], "Secret", lookup)
            elif "configMapKeyRef" in source:
                value = _key_ref(source["configMapKeyRef"], "ConfigMap", lookup)
            else:  # resourceFieldRef: no resource accounting on this node
                value = "0"
        if value is not None:
            env[var["name"]] = value
    return env


def command_line(container: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args, `$(VAR)`-expanded; the image's entrypoint does not exist here."""
    if not container.get("command"):
        raise ConfigError(
            f"container {container['name']} has no command: this node runs no image entrypoints"
        )
    return [expand(a, env) for a in [*container["command"], *(container.get("args") or [])]]


def tcp_ports(pod: Obj) -> set[int]:
    """The TCP container (and host) ports the pod's containers declare."""
    ports: set[int] = set()
    for c in pod["spec"].get("containers", []):
        for p in c.get("ports") or []:
            if p.get("protocol", "TCP") == "TCP":
                ports.add(int(p["containerPort"]))
                if p.get("hostPort"):
                    ports.add(int(p["hostPort"]))
    return ports


def refusal(pod: Obj) -> str | None:
    """Why this node cannot run the pod at all, or None."""
    spec = pod["spec"]
    if spec.get("initContainers"):
        return "init containers are not supported by the local node agent"
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        if not any(k in SUPPORTED_VOLUMES for k in kinds):
            supported = ", ".join(SUPPORTED_VOLUMES)
            return f"volume {volume['name']!r} of type {'/'.join(kinds)} is not supported (only {supported})"
    return None


def grace_seconds(pod: Obj) -> int:
    """How long a stopping pod may take: the deletion's grace, else the spec's, else 30 s."""
    meta, spec = pod["metadata"], pod["spec"]
    for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if value is not None:
            return int(value)
    return 30


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def backoff(restarts: int) -> float:
    """Seconds before restart number `restarts` + 1: 1, 2, 4 ... 30 (the kubelet: 10 ... 300)."""
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** max(0, restarts)))


@dataclass
class Probe:
    """An httpGet or tcpSocket probe with the kubelet's defaults; exec probes always pass here."""

    kind: str  # "http" | "tcp" | "exec"
    port: int = 0
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def probe(container: Obj, which: str) -> Probe | None:
    """The container's `which` (readinessProbe, livenessProbe) probe, its named port resolved."""
    spec = container.get(which)
    if not spec:
        return None
    named = {p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}

    def port_of(value: int | str) -> int:
        return named[value] if isinstance(value, str) and value in named else int(value)

    common = {
        "initial_delay": float(spec.get("initialDelaySeconds", 0)),
        "period": float(spec.get("periodSeconds", 10)),
        "timeout": float(spec.get("timeoutSeconds", 1)),
        "success_threshold": int(spec.get("successThreshold", 1)),
        "failure_threshold": int(spec.get("failureThreshold", 3)),
    }
    if "httpGet" in spec:
        get = spec["httpGet"]
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
        return Probe("http", port_of(get["port"]), get.get("path", "/"), headers, **common)  # type: ignore[arg-type]
    if "tcpSocket" in spec:
        return Probe("tcp", port_of(spec["tcpSocket"]["port"]), **common)  # type: ignore[arg-type]
    return Probe("exec", **common)  # type: ignore[arg-type]


@dataclass
class ContainerView:
    """What the agent knows about one container, enough to write its containerStatus."""

    name: str
    image: str
    restart_count: int = 0
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    pid: int = 0
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    ready: bool = False
    last: Obj | None = None  # the previous termination, for lastState

    def terminated(self) -> Obj:
        reason = "Completed" if self.exit_code == 0 else (self.reason or "Error")
        state: Obj = {"exitCode": self.exit_code, "reason": reason, "finishedAt": self.finished_at}
        if self.started_at:
            state["startedAt"] = self.started_at
        if self.exit_code > 128:
            state["signal"] = self.exit_code - 128
        if self.message:
            state["message"] = self.message
        return {"terminated": state}

    def status(self) -> Obj:
        if self.state == "running":
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = self.terminated()
        else:
            state = {
                "waiting": {"reason": self.reason, **({"message": self.message} if self.message else {})}
            }
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.state == "running",
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last or {},
        }
        if self.pid:
            out["containerID"] = f"longtask://{self.pid}"
        return out


def phase(views: list[ContainerView], *, restarting: bool) -> str:
    """The pod phase from its containers (kubelet rules, no init containers).

    `restarting`: a container that ran is waiting for its restart (the pod stays Running).
    """
    if any(v.state == "running" for v in views) or restarting:
        return "Running"
    if views and all(v.state == "terminated" for v in views):
        return "Succeeded" if all(v.exit_code == 0 for v in views) else "Failed"
    if any(v.state == "terminated" for v in views):
        return "Running"
    return "Pending"


def pod_status(
    *, phase_: str, views: list[ContainerView], start_time: str, host_ip: str, stamp: str, previous: Obj
) -> Obj:
    """The status the agent reports; transition times are kept while a condition holds."""
    ready = bool(views) and all(v.ready for v in views) and phase_ == "Running"
    started = phase_ != "Pending" or any(v.state != "waiting" for v in views)
    before = {c["type"]: c for c in previous.get("conditions") or []}

    def condition(kind: str, value: bool, reason: str = "") -> Obj:
        status = "True" if value else "False"
        old = before.get(kind, {})
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out: Obj = {"type": kind, "status": status, "lastTransitionTime": since or stamp}
        if reason and not value:
            out["reason"] = reason
        return out

    waiting = [v.name for v in views if not v.ready]
    reason = "PodCompleted" if phase_ in ("Succeeded", "Failed") else "ContainersNotReady"
    status: Obj = {
        "phase": phase_,
        "conditions": [
            condition("PodReadyToStartContainers", started),
            condition("Initialized", True),
            condition("Ready", ready, reason),
            condition("ContainersReady", ready, reason),
            condition("PodScheduled", True),
        ],
        "containerStatuses": [v.status() for v in views],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": start_time,
    }
    if waiting and not ready and phase_ == "Running":
        status["conditions"][2]["message"] = f"containers with unready status: [{' '.join(waiting)}]"
    return status
