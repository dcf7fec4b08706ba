"""Gateway replicas for the failover tests: processes on fixed ports that a test SIGKILLs,
stops and starts again, behind one lbproxy.Balancer (the address clients use)."""

from __future__ import annotations

from longtask_dev import platform as platform_mod
from longtask_dev import procs


class Gateways:
    """`replicas` gateway processes (auth off) of `platform`; stop() at the end."""

    def __init__(self, platform: platform_mod.Platform, *, replicas: int = 2) -> None:
        self.platform = platform
        self.ports = [procs.free_port() for _ in range(replicas)]
        self.children: dict[int, procs.Child] = {}

    @property
    def backends(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    def start(self, port: int) -> None:
        """Start (again) the replica on `port`; returns once it answers /healthz."""
        self.children[port] = self.platform.start_api(port=port, auth=False)

    def start_all(self) -> Gateways:
        for port in self.ports:
            self.start(port)
        return self

    def kill(self, port: int) -> None:
        """SIGKILL, as a crash or an OOM kill ends it."""
        child = self.children.pop(port)
        child.kill()
        self.platform.cluster.children.remove(child)

    def stop_one(self, port: int) -> None:
        """SIGTERM, as a rolling update stops a pod."""
        self.platform.stop_child(self.children.pop(port))

    def stop(self) -> None:
        for port in list(self.children):
            self.stop_one(port)
