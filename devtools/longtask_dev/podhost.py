"""What the node's pod workers share: the API client, where files go, the pods' base
environment, and the TCP ports each admitted pod holds.

Pods share the host's network, so two pods may not declare the same port, and a port some
other process already listens on is taken; a Service resolves to 127.0.0.1 in a pod's
/etc/hosts only while an admitted pod of its selector runs here (else a host process on
the same port, say a system Redis on 6379, would answer for it). It must not start processes.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtask_dev import nodekube

HOST_IP = "127.0.0.1"


def listening_ports() -> set[int]:
    """TCP ports some socket LISTENs on (IPv4 or IPv6), from /proc/net."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class _Admitted:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: set[int]


class PortBook:
    """The pods admitted to the node: the TCP ports each holds, and their labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Admitted] = {}

    def claim(self, *, pod: dict[str, Any], ports: set[int]) -> str | None:
        """Admit `pod`, holding `ports` for it, or say why not."""
        meta = pod["metadata"]
        with self._lock:
            for uid, other in self._held.items():
                clash = sorted(ports & other.ports)
                if uid != meta["uid"] and clash:
                    return f"port(s) {clash} already declared by pod {other.name} on this node"
            busy = ports & listening_ports()
            if busy:
                return f"port(s) {sorted(busy)} already listening on the node"
            self._held[meta["uid"]] = _Admitted(
                meta["name"], meta["namespace"], meta.get("labels") or {}, ports
            )
            return None

    def release(self, uid: str) -> None:
        with self._lock:
            self._held.pop(uid, None)

    def selects(self, *, namespace: str, selector: dict[str, str]) -> bool:
        """Whether a Service with `selector` has an admitted pod of this node behind it."""
        with self._lock:
            return bool(selector) and any(
                p.namespace == namespace and selector.items() <= p.labels.items() for p in self._held.values()
            )


class MountPoints:
    """Mount points the node created on the host for its pods, removed once no pod uses them.

    A bind mount needs its target to exist; one the host lacks (e.g.
    /var/run/secrets/kubernetes.io/serviceaccount) is created, as a container runtime
    creates it in an image, and taken away again with the last pod that held it (a
    SIGKILLed agent leaves such empty folders behind).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: set[Path] = set()
        self._users: collections.Counter[Path] = collections.Counter()

    def hold(self, target: Path, *, directory: bool) -> list[Path]:
        """Make `target` exist; return the paths created for it that the caller now holds."""
        with self._lock:
            chain = [target, *target.parents]
            for path in reversed([p for p in chain if not p.exists()]):
                if path == target and not directory:
                    path.touch()
                else:
                    path.mkdir()
                self._created.add(path)
            held = [p for p in chain if p in self._created]  # deepest first
            self._users.update(held)
            return held

    def release(self, held: list[Path]) -> None:
        with self._lock:
            for path in held:
                self._users[path] -= 1
                if self._users[path] > 0:
                    continue
                del self._users[path]
                self._created.discard(path)
                with contextlib.suppress(OSError):  # not empty: something else put files there
                    path.rmdir() if path.is_dir() else path.unlink()


@dataclass
class NodeContext:
    """Shared by every pod worker of the node."""

    kube: nodekube.NodeKube
    state_dir: Path
    api_port: int
    python: str  # the agent's interpreter; its folder (the venv's bin) comes first on PATH
    workdir: Path  # working dir of containers whose workingDir does not exist on the host
    ports: PortBook = field(default_factory=PortBook)
    mountpoints: MountPoints = field(default_factory=MountPoints)
    shutdown_grace: float = 5.0  # seconds pods get when the node stops

    def base_env(self, *, hostname: str) -> dict[str, str]:
        """What every container starts with (never the agent's own environment)."""
        bin_dir = str(Path(self.python).parent)  # not resolved: the venv's bin, not the base Python's
        return {
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": hostname,
            "HOME": "/root",
            "KUBERNETES_SERVICE_HOST": HOST_IP,
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.api_port),
            "KUBERNETES_PORT": f"tcp://{HOST_IP}:{self.api_port}",
        }

    def log_path(self, *, namespace: str, pod: str, container: str) -> Path:
        return self.state_dir / "logs" / "pods" / f"{namespace}_{pod}_{container}.log"
