"""One pod's life on the local node, in its own thread: admit, start, probe, restart, stop, report.

A pod worker owns its pod's processes from admission to the removal of the pod object, as
the kubelet's pod workers do; it reports through NodeKube and never touches another pod.
Ports: a pod whose TCP containerPorts are listening already, or declared by another pod of
this node, stays Pending (waiting reason PortInUse, a Warning Event) until they are free.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longtask_dev import nodekube, podhost, podprobes, podproc, podspec, podvolumes

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HOST_IP = podhost.HOST_IP
_TICK = 0.2


class PodWorker(threading.Thread):
    """Runs one pod; the agent's main thread only calls update(), gone() and shutdown()."""

    def __init__(self, node: podhost.NodeContext, pod: Obj) -> None:
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
        self.probers: dict[str, podprobes.Prober] = {}
        self.kill_at: dict[str, float] = {}
        self.volumes = podvolumes.Volumes(kube=node.kube, pod=pod, pod_dir=self.dir, host_ip=HOST_IP)
        self._reported: Obj = pod.get("status") or {}
        self._start_time = nodekube.now()
        self._said: set[tuple[str, str]] = set()
        self._restarting: set[str] = set()  # next start of these is a restart
        self._held: list[Path] = []  # mount points created on the host for this pod

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
            self.node.mountpoints.release(self._held)
            shutil.rmtree(self.dir, ignore_errors=True)  # emptyDirs go with their pod

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
        self._api(
            "event",
            lambda: self.node.kube.event(pod=self._pod, reason=reason, message=message, warning=warning),
        )

    def _hold(self, target: Path, *, directory: bool) -> None:
        self._held.extend(self.node.mountpoints.hold(target, directory=directory))

    def _api(self, what: str, call: Callable[[], object]) -> bool:
        """One API call; failing (the apiserver restarting) is logged, never fatal: callers retry."""
        try:
            call()
        except Exception as exc:
            log.warning("%s of pod %s/%s failed: %s", what, self.namespace, self.name, exc)
            return False
        return True

    def _waiting(self, reason: str, message: str) -> None:
        for view in self.views.values():
            view.reason, view.message = reason, message
        self._report()

    def _live(self) -> None:
        if self._ending() or (self._pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return self._finish()  # ended before this agent started: nothing to run
        refusal = podspec.refusal(self._pod)
        if refusal:
            self._say("Unsupported", refusal, warning=True)
            self._waiting("Unsupported", refusal)
            while self._sleep(5):
                pass
            return self._finish()
        while why := self.node.ports.claim(pod=self._pod, ports=podspec.tcp_ports(self._pod)):
            self._say("PortInUse", f"cannot start: {why}", warning=True, once=True)
            self._waiting("PortInUse", why)
            if not self._sleep(2):
                return self._finish()
        while True:
            try:
                self.volumes.prepare()
                break
            except Exception as exc:  # a missing Secret (ConfigError) or an API error: retry
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
            # Services are looked up at each start: a restarted container sees new ones.
            services = [
                (namespace, service)
                for namespace, service, selector in self.node.kube.services()
                if self.node.ports.selects(namespace=namespace, selector=selector)
            ]
            self.volumes.write_hosts(hostname=self.hostname, services=services)
        except Exception as exc:  # a missing Secret (ConfigError), or the API away for a moment
            reason = (
                "CreateContainerConfigError"
                if isinstance(exc, podspec.ConfigError)
                else "CreateContainerError"
            )
            view.state, view.reason, view.message = "waiting", reason, str(exc)
            self._say("Failed", f"Error: {exc}", warning=True, once=True)
            self.restart_at[name] = time.monotonic() + 2
            return
        workdir = container.get("workingDir") or ""
        spec = {
            "argv": argv,
            "env": env,
            "workingDir": workdir if workdir and Path(workdir).is_dir() else str(self.node.workdir),
            "hostname": self.hostname,
            "mounts": self.volumes.mounts(container, hold=self._hold),
            # Host folders the pod's command needs (the project and its Python): a volume
            # mounted over one of their parents (the chart's emptyDir at /tmp, say, with the
            # checkout under /tmp) must not hide them.
            "keep": sorted({str(self.node.workdir), sys.prefix, sys.base_prefix}),
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
        self.probers[name] = podprobes.Prober.for_container(container, now=time.monotonic())
        self._say("Started", f"Started container {name}")

    def _exited(self, name: str, code: int) -> None:
        view, proc = self.views[name], self.procs.pop(name)
        proc.reap()
        ran = time.monotonic() - self.probers[name].started
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
                self._api("token refresh", self.volumes.refresh)
            self._report()

    def _probe(self, now: float) -> None:
        for name, proc in self.procs.items():
            if name in self.kill_at:
                continue  # being restarted after a failed liveness probe
            finding = self.probers[name].step(now)
            self.views[name].ready = self.probers[name].ready
            if finding == "unready":
                self._say("Unhealthy", f"Readiness probe failed for container {name}", warning=True)
            elif finding == "unhealthy":
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
        if status != self._reported and self._api(
            "status update",
            lambda: self.node.kube.patch_pod_status(
                namespace=self.namespace, name=self.name, uid=self.uid, status=status
            ),
        ):
            self._reported = status  # else: sent again on the next tick

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
            code = proc.exit_code()
            self._exited(name, 137 if code is None else code)
        if self.probers:  # a pod this agent never ran keeps the status it has
            self._report()

        def remove() -> None:
            self.node.kube.delete_pod(namespace=self.namespace, name=self.name, uid=self.uid)

        while not (self._shutdown or self._gone) and not self._api("removal", remove):
            self._wake.wait(1.0)
