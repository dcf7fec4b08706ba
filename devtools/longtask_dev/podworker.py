"""One pod's life on the local node, in its own thread: admit, start, probe, restart, stop, report.

A pod worker owns its pod's processes from admission to the removal of the pod object, as
the kubelet's pod workers do; it reports through NodeKube and never touches another pod.
Ports: a pod whose TCP containerPorts are listening already, or declared by another pod of
this node, stays Pending (waiting reason PortInUse, a Warning Event) until they are free.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtask_dev import nodekube, podproc, podspec, podvolumes

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HOST_IP = "127.0.0.1"
_TICK = 0.2


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


class PortBook:
    """The TCP ports each admitted pod of the node holds (pods share the host's network)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, set[int]]] = {}

    def claim(self, *, uid: str, name: str, ports: set[int]) -> str | None:
        """Hold `ports` for pod `uid`, or say why not."""
        with self._lock:
            for other, (who, held) in self._held.items():
                if other != uid and ports & held:
                    return f"port(s) {sorted(ports & held)} already declared by pod {who} on this node"
            busy = ports & listening_ports()
            if busy:
                return f"port(s) {sorted(busy)} already listening on the node"
            self._held[uid] = (name, ports)
            return None

    def release(self, uid: str) -> None:
        with self._lock:
            self._held.pop(uid, None)


@dataclass
class NodeContext:
    """What every pod worker shares: the API, where files go, the ports book."""

    kube: nodekube.NodeKube
    state_dir: Path
    api_port: int
    python: str
    workdir: Path
    ports: PortBook = field(default_factory=PortBook)
    shutdown_grace: float = 5.0

    def base_env(self, *, hostname: str) -> dict[str, str]:
        bin_dir = str(Path(self.python).parent)  # the venv's bin: `longtask`, `python`
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


@dataclass
class _Probing:
    readiness: podspec.Probe | None
    liveness: podspec.Probe | None
    started: float
    next_ready: float = 0.0
    next_live: float = 0.0
    ok: int = 0
    failed: int = 0
    live_failed: int = 0


def _probe_ok(p: podspec.Probe) -> bool:
    try:
        if p.kind == "tcp":
            socket.create_connection((HOST_IP, p.port), timeout=p.timeout).close()
        elif p.kind == "http":
            conn = http.client.HTTPConnection(HOST_IP, p.port, timeout=p.timeout)
            try:
                conn.request("GET", p.path, headers=p.headers)
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        return True  # exec probes: not run on this node
    except (OSError, http.client.HTTPException):
        return False


class PodWorker(threading.Thread):
    def __init__(self, node: NodeContext, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.node, self.uid = node, meta["uid"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.dir = node.state_dir / "node" / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self._pod, self._gone, self._shutdown = pod, False, False
        self._wake = threading.Event()
        self.hostname = (pod["spec"].get("hostname") or self.name)[:63]
        self.containers = {c["name"]: c for c in pod["spec"]["containers"]}
        self.views = {n: podspec.ContainerView(n, c.get("image", "")) for n, c in self.containers.items()}
        self.procs: dict[str, podproc.Process] = {}
        self.restart_at: dict[str, float] = {}
        self.crashes: dict[str, int] = dict.fromkeys(self.containers, 0)
        self.probing: dict[str, _Probing] = {}
        self.kill_at: dict[str, float] = {}
        self.volumes = podvolumes.Volumes(kube=node.kube, pod=pod, pod_dir=self.dir, host_ip=HOST_IP)
        self._reported: Obj = pod.get("status") or {}
        self._start_time = nodekube.now()
        self._said: set[tuple[str, str]] = set()
        self._restarting: set[str] = set()  # next start of these is a restart

    # -- called by the agent's main thread -----------------------------------------------------
    def update(self, pod: Obj) -> None:
        self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        """The pod object was removed (force deletion): kill at once."""
        self._gone = True
        self._wake.set()

    def shutdown(self) -> None:
        """The node stops: stop the processes within the node's grace, report nothing."""
        self._shutdown = True
        self._wake.set()

    # -- the pod's life --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._live()
        except Exception:
            log.exception("pod worker %s/%s failed", self.namespace, self.name)
        finally:
            for proc in self.procs.values():
                proc.signal(signal.SIGKILL)
                proc.reap()
            self.node.ports.release(self.uid)

    def _ending(self) -> bool:
        return self._gone or self._shutdown or bool(self._pod["metadata"].get("deletionTimestamp"))

    def _sleep(self, seconds: float) -> bool:
        """Wait up to `seconds` (less if woken); False once the pod is ending."""
        self._wake.wait(seconds)
        self._wake.clear()
        return not self._ending()

    def _say(self, reason: str, message: str, *, warning: bool = False, once: bool = False) -> None:
        if once and (reason, message) in self._said:
            return
        self._said.add((reason, message))
        self.node.kube.event(pod=self._pod, reason=reason, message=message, warning=warning)

    def _waiting(self, reason: str, message: str) -> None:
        for view in self.views.values():
            view.reason, view.message = reason, message
        self._report()

    def _live(self) -> None:
        if self._ending() or (self._pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return self._finish()  # ended before this agent started: nothing to run
        refusal = podspec.refusal(self._pod)
        if refusal:
            self._say("FailedMount", refusal, warning=True)
            self._waiting("Unsupported", refusal)
            while self._sleep(5):
                pass
            return self._finish()
        while why := self.node.ports.claim(uid=self.uid, name=self.name, ports=podspec.tcp_ports(self._pod)):
            self._say("PortInUse", f"cannot start: {why}", warning=True, once=True)
            self._waiting("PortInUse", why)
            if not self._sleep(2):
                return self._finish()
        while True:
            try:
                self.volumes.prepare()
                self.volumes.write_hosts(hostname=self.hostname, services=self.node.kube.service_names())
                break
            except podspec.ConfigError as exc:
                self._say("FailedMount", str(exc), warning=True, once=True)
                self._waiting("ContainerCreating", str(exc))
                if not self._sleep(2):
                    return self._finish()
        for name in self.containers:
            self._start(name)
        self._supervise()
        return self._finish()

    def _start(self, name: str) -> None:
        container, view = self.containers[name], self.views[name]
        try:
            env = podspec.container_env(
                self._pod,
                container,
                lookup=self.volumes.lookup,
                base=self.node.base_env(hostname=self.hostname),
                host_ip=HOST_IP,
            )
            argv = podspec.command_line(container, env)
        except podspec.ConfigError as exc:
            view.state, view.reason, view.message = "waiting", "CreateContainerConfigError", str(exc)
            self._say("Failed", f"Error: {exc}", warning=True, once=True)
            self.restart_at[name] = time.monotonic() + 2
            return
        workdir = container.get("workingDir") or ""
        spec = {
            "argv": argv,
            "env": env,
            "workingDir": workdir if workdir and Path(workdir).is_dir() else str(self.node.workdir),
            "hostname": self.hostname,
            "mounts": self.volumes.mounts(container),
        }
        log_path = self.node.log_path(namespace=self.namespace, pod=self.name, container=name)
        self.procs[name] = podproc.Process(
            spec=spec, spec_path=self.dir / f"{name}.json", log_path=log_path, python=self.node.python
        )
        if name in self._restarting:
            self._restarting.discard(name)
            view.restart_count += 1
        view.state, view.reason, view.message = "running", "", ""
        view.pid, view.started_at, view.ready = self.procs[name].pid, nodekube.now(), False
        now = time.monotonic()
        state = _Probing(
            podspec.probe(container, "readinessProbe"), podspec.probe(container, "livenessProbe"), now
        )
        state.next_ready = now + (state.readiness.initial_delay if state.readiness else 0)
        state.next_live = now + (state.liveness.initial_delay if state.liveness else 0)
        self.probing[name] = state
        self._say("Started", f"Started container {name}")

    def _exited(self, name: str, code: int) -> None:
        view, proc = self.views[name], self.procs.pop(name)
        proc.reap()
        ran = time.monotonic() - self.probing[name].started
        self.crashes[name] = 0 if ran > 60 else self.crashes[name] + 1
        view.state, view.exit_code, view.finished_at, view.ready = "terminated", code, nodekube.now(), False
        view.reason, view.message = ("Completed" if code == 0 else "Error"), ""
        self.kill_at.pop(name, None)
        policy = self._pod["spec"].get("restartPolicy", "Always")
        if podspec.should_restart(policy, code) and not self._ending():
            delay = podspec.backoff(self.crashes[name] - 1)
            self.restart_at[name] = time.monotonic() + delay
            self._restarting.add(name)
            view.last = view.terminated()
            view.state, view.reason = "waiting", "CrashLoopBackOff"
            view.message = f"back-off {delay:.0f}s restarting failed container={name} pod={self.name}"
            self._say("BackOff", f"Back-off restarting failed container {name}", warning=True)

    def _supervise(self) -> None:
        while self._sleep(_TICK):
            now = time.monotonic()
            for name, proc in list(self.procs.items()):
                code = proc.exit_code()
                if code is not None:
                    self._exited(name, code)
                elif self.kill_at.get(name, float("inf")) <= now:
                    proc.signal(signal.SIGKILL)
            for name, at in list(self.restart_at.items()):
                if at <= now:
                    del self.restart_at[name]
                    self._start(name)
            self._probe(now)
            if self.volumes.next_refresh() <= now:
                self.volumes.refresh()
            self._report()

    def _probe(self, now: float) -> None:
        for name, proc in self.procs.items():
            state, view = self.probing[name], self.views[name]
            if state.readiness is None:
                view.ready = True
            elif state.next_ready <= now:
                ok = _probe_ok(state.readiness)
                state.ok, state.failed = (state.ok + 1, 0) if ok else (0, state.failed + 1)
                if state.ok >= state.readiness.success_threshold:
                    view.ready = True
                elif state.failed >= state.readiness.failure_threshold and view.ready:
                    view.ready = False
                    self._say("Unhealthy", f"Readiness probe failed for container {name}", warning=True)
                # Until the first success, probe every second at most: pods become Ready sooner.
                period = state.readiness.period if view.ready else min(state.readiness.period, 1.0)
                state.next_ready = time.monotonic() + period
            live = state.liveness
            if live is not None and state.next_live <= now and name not in self.kill_at:
                state.live_failed = 0 if _probe_ok(live) else state.live_failed + 1
                state.next_live = time.monotonic() + live.period
                if state.live_failed >= live.failure_threshold:
                    self._say("Unhealthy", f"Liveness probe failed for container {name}", warning=True)
                    self._say("Killing", f"Container {name} failed liveness probe, will be restarted")
                    proc.signal(signal.SIGTERM)
                    self.kill_at[name] = now + podspec.grace_seconds(self._pod)

    def _report(self) -> None:
        if self._shutdown or self._gone:
            return
        views = list(self.views.values())
        phase = podspec.phase(views, restarting=bool(self._restarting))
        status = podspec.pod_status(
            phase_=phase,
            views=views,
            start_time=self._start_time,
            host_ip=HOST_IP,
            stamp=nodekube.now(),
            previous=self._reported,
        )
        if status != self._reported:
            self.node.kube.patch_pod_status(
                namespace=self.namespace, name=self.name, uid=self.uid, status=status
            )
            self._reported = status

    def _finish(self) -> None:
        """Stop the processes (SIGTERM, grace, SIGKILL), report, remove the pod object."""
        while not self._ending():
            self._sleep(1.0)  # a pod that ran to completion stays until it is deleted
        grace = self.node.shutdown_grace if self._shutdown else podspec.grace_seconds(self._pod)
        self.restart_at.clear()
        self._restarting.clear()
        for name, proc in self.procs.items():
            if not self._shutdown:
                self._say("Killing", f"Stopping container {name}")
            proc.signal(signal.SIGTERM)
        began = time.monotonic()
        deadline = began + grace
        while self.procs and time.monotonic() < deadline and not self._gone:
            for name, proc in list(self.procs.items()):
                code = proc.exit_code()
                if code is not None:
                    self._exited(name, code)
            self._wake.wait(0.1)
            self._wake.clear()
            if not self._shutdown:  # a second delete may shorten the grace period
                deadline = min(deadline, began + podspec.grace_seconds(self._pod))
        for name, proc in list(self.procs.items()):
            proc.signal(signal.SIGKILL)
            proc.reap()
            self._exited(name, proc.exit_code() or 137)
        if self._shutdown or self._gone:
            return
        self._report()
        self.node.kube.delete_pod(namespace=self.namespace, name=self.name, uid=self.uid)
