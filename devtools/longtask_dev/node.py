"""The local node agent, `python -m longtask_dev.node`: it plays the kubelet for the embedded cluster.

It registers the Node, keeps it Ready (node Lease in kube-node-lease and the Ready
condition renewed every few seconds, so the node lifecycle controller keeps it untainted),
watches the pods bound to it and gives each a pod worker (podworker), which runs its
containers' `command` + `args` as local processes (podproc) and reports their status.

What it does: env / envFrom / valueFrom, emptyDir, projected (service-account token from
the TokenRequest API, bound to the pod and refreshed; kube-root-ca.crt; namespace), secret,
configMap, downwardAPI and hostPath volumes bind-mounted in a private mount namespace;
httpGet / tcpSocket readiness and liveness probes; restartPolicy with a backoff
(1 s doubling to 30 s); graceful deletion (SIGTERM, grace period, SIGKILL, then the pod
object is removed); a PID, mount and UTS namespace per container (hostname = pod name,
the pod's own /etc/hosts); Events (Started, Killing, BackOff, Unhealthy, PortInUse,
FailedMount, Failed, Unsupported); logs in
`<state>/logs/pods/<namespace>_<pod>_<container>.log`.

What it does not do: images (ignored: the command runs from the host, the venv's bin first
on PATH, in the container's workingDir if it exists on the host, else the repository root),
users and securityContext (everything runs as the agent's user, root), resource limits,
init containers and other volume types (the pod stays Pending with a Warning Event), exec
probes (counted as passing), startup probes, a pod network (pods share the host's network:
podIP is 127.0.0.1, and a pod whose ports are taken waits, see podworker), kube-proxy
(a Service's names resolve to 127.0.0.1 in the pods' /etc/hosts while a pod it selects
runs here, with no port translation), a root filesystem of its own (pods see the host's,
HOME is /root), `kubectl logs` / `exec` (there is no kubelet server), and Service
environment variables other than KUBERNETES_*.

On shutdown every pod process gets SIGTERM and, after a short node grace period (5 s),
SIGKILL; a SIGKILLed agent takes every pod process with it (podproc explains how).
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from longtask_dev import nodekube, podhost, podworker

log = logging.getLogger("longtask_dev.node")
HEARTBEAT_SECONDS = 5.0
# Not enforced: nothing here measures or limits what a process uses.
CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "500Gi"}


class Agent:
    """Routes pod events to pod workers; a heartbeat thread keeps the node Ready."""

    def __init__(self, node: podhost.NodeContext) -> None:
        self.node = node
        self.kube = node.kube
        self.workers: dict[str, podworker.PodWorker] = {}
        self.stopping = threading.Event()
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def run(self) -> None:
        self.kube.register_node(capacity=CAPACITY)
        self.kube.heartbeat()
        threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._watch, name="pod-watch", daemon=True).start()
        log.info("node %s registered; watching its pods", self.kube.node_name)
        while not self.stopping.is_set():
            try:
                kind, obj = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            self._handle(kind, obj)
        self._shutdown()

    def _heartbeats(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.kube.heartbeat()
            except Exception as exc:  # the apiserver may be restarting; try again next beat
                log.warning("heartbeat failed: %s", exc)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                for event in self.kube.pod_events(stop=self.stopping.is_set):
                    self.events.put(event)
            except Exception:  # never leave the node deaf: log, wait, list again
                log.exception("pod watch failed")
                self.stopping.wait(1.0)

    def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "SYNC":
            present = {pod["metadata"]["uid"] for pod in obj.get("items", [])}
            for uid in [u for u in self.workers if u not in present]:
                self.workers.pop(uid).gone()
            for pod in obj.get("items", []):
                self._pod(pod)
        elif kind == "DELETED":
            worker = self.workers.pop(obj["metadata"]["uid"], None)
            if worker is not None:
                worker.gone()
        else:
            self._pod(obj)

    def _pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self.workers:
            self.workers[uid].update(pod)
            return
        worker = podworker.PodWorker(self.node, pod)
        self.workers[uid] = worker
        worker.start()

    def _shutdown(self) -> None:
        """Stop every pod's processes (SIGTERM, then SIGKILL after the node grace period)."""
        for worker in self.workers.values():
            worker.shutdown()
        for worker in self.workers.values():
            worker.join(timeout=self.node.shutdown_grace + 5)
        log.info("node agent stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longtask_dev.node", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="pods' folders and logs go here")
    parser.add_argument("--api-port", type=int, required=True, help="KUBERNETES_SERVICE_PORT of the pods")
    parser.add_argument("--workdir", type=Path, required=True, help="working dir of containers without one")
    parser.add_argument(
        "--shutdown-grace", type=float, default=5.0, help="seconds pods get when the node stops"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    node = podhost.NodeContext(
        kube=nodekube.NodeKube(kubeconfig=args.kubeconfig, node_name=args.node_name),
        state_dir=args.state_dir,
        api_port=args.api_port,
        python=sys.executable,
        workdir=args.workdir,
        shutdown_grace=args.shutdown_grace,
    )
    agent = Agent(node)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
