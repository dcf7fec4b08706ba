"""The local node restarts, stops and refuses pods as a kubelet would.

Covers: restartPolicy Always restarts an exiting container with a backoff (restartCount
grows, lastState keeps the exit code, a BackOff Event), OnFailure restarts a failure and
then succeeds (an emptyDir outlives the restart; the mount point made on the host for it goes with the
pod), OnFailure after exit 0 and Never after
exit 3 end Succeeded / Failed with the exit code; graceful deletion sends SIGTERM, leaves
the pod Terminating while the process overstays, SIGKILLs it after the grace period, and
removes the pod object (a Killing Event); scaling a Deployment down removes pods and their
whole process trees, the remaining pod's processes untouched; a pod whose containerPort is
already listening on the node, or declared by another pod, stays Pending with a PortInUse
Warning Event and starts once the port is free; a container failing its liveness probe
failureThreshold times is stopped and restarted (Unhealthy and Killing Events); pods keep
running through an apiserver restart, and the agent still acts on their deletion.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from longtask_dev import cluster as cluster_mod
from longtask_dev import procs
from tests import helpers, pods

pytestmark = pytest.mark.cluster

DONE = ("Succeeded", "Failed")
RETRY_ONCE = """
import os, sys
marker = os.path.join(os.environ["SCRATCH"], "ran-before")
if os.path.exists(marker):
    print("second run", flush=True); sys.exit(0)
open(marker, "w").close()
print("first run", flush=True); sys.exit(1)
"""


def test_restart_policies(cluster: cluster_mod.Cluster, namespace: str):
    mount_point = Path(f"/var/tmp/longtask-scratch-{namespace}")  # the host has none: made for the pod
    scratch = {
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "container": {
            "volumeMounts": [{"name": "scratch", "mountPath": str(mount_point)}],
            "env": [{"name": "SCRATCH", "value": str(mount_point)}],
        },
    }
    pods.apply(
        cluster,
        namespace,
        pods.python_pod("crasher", "print('run', flush=True); raise SystemExit(1)", restartPolicy="Always"),
        pods.python_pod("retry", RETRY_ONCE, restartPolicy="OnFailure", **scratch),
        pods.python_pod("once", "print('done')", restartPolicy="OnFailure"),
        pods.python_pod("fails", "raise SystemExit(3)", restartPolicy="Never"),
    )
    crasher = pods.wait(
        cluster,
        namespace,
        "crasher",
        "two restarts",
        lambda p: pods.container_status(p).get("restartCount", 0) >= 2,
    )
    assert pods.phase(crasher) == "Running"
    assert pods.container_status(crasher)["lastState"]["terminated"]["exitCode"] == 1
    log = cluster.pod_log(namespace=namespace, pod="crasher", container="app").read_text()
    assert log.count("run") >= 2
    helpers.poll(
        lambda: any(e["reason"] == "BackOff" for e in pods.events(cluster, namespace, "crasher")),
        timeout=30,
        what="a BackOff event",
    )

    retry = pods.wait(cluster, namespace, "retry", "to finish", lambda p: pods.phase(p) in DONE)
    assert pods.phase(retry) == "Succeeded"
    assert pods.container_status(retry)["restartCount"] == 1
    log = cluster.pod_log(namespace=namespace, pod="retry", container="app").read_text()
    assert log.splitlines() == ["first run", "second run"]
    cluster.kubectl("delete", "pod", "retry", "-n", namespace)
    helpers.poll(lambda: not mount_point.exists(), timeout=10, what="the mount point made for the pod to go")

    once = pods.wait(cluster, namespace, "once", "to finish", lambda p: pods.phase(p) in DONE)
    assert pods.phase(once) == "Succeeded" and pods.container_status(once)["restartCount"] == 0
    fails = pods.wait(cluster, namespace, "fails", "to finish", lambda p: pods.phase(p) in DONE)
    assert pods.phase(fails) == "Failed"
    terminated = pods.container_status(fails)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_failed_liveness_probe_restarts_the_container(cluster: cluster_mod.Cluster, namespace: str):
    nobody = procs.free_port()  # nothing listens here: every liveness check fails
    probe = {"httpGet": {"path": "/", "port": nobody}, "periodSeconds": 1, "failureThreshold": 2}
    pod = pods.python_pod(
        "unhealthy", "import time\nwhile True: time.sleep(1)", container={"livenessProbe": probe}
    )
    pods.apply(cluster, namespace, pod)
    restarted = pods.wait(
        cluster,
        namespace,
        "unhealthy",
        "a restart",
        lambda p: pods.container_status(p).get("restartCount", 0) >= 1,
    )
    assert pods.container_status(restarted)["lastState"]["terminated"]["exitCode"] == 128 + 15  # SIGTERM
    messages = [e["message"] for e in pods.events(cluster, namespace, "unhealthy")]
    assert "Liveness probe failed for container app" in messages
    assert "Container app failed liveness probe, will be restarted" in messages


STUBBORN = """
import signal, sys, time
def on_term(signum, frame):
    print("got TERM, staying", flush=True)
signal.signal(signal.SIGTERM, on_term)
print("started", flush=True)
while True:
    time.sleep(0.1)
"""


def test_graceful_deletion_ends_with_sigkill(cluster: cluster_mod.Cluster, namespace: str):
    pods.apply(cluster, namespace, pods.python_pod("stubborn", STUBBORN, terminationGracePeriodSeconds=3))
    log = cluster.pod_log(namespace=namespace, pod="stubborn", container="app")
    pod = pods.wait(cluster, namespace, "stubborn", "Running", lambda p: pods.phase(p) == "Running")
    helpers.poll(lambda: log.exists() and "started" in log.read_text(), timeout=30, what="the handler")
    tree = pods.process_tree(pods.shim_pid(pod))
    assert len(tree) >= 3, "shim, init, command"

    cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=false")
    helpers.poll(lambda: "got TERM" in log.read_text(), timeout=30, what="SIGTERM to reach the process")
    terminating = pods.get(cluster, namespace, "stubborn")
    assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
    assert all(helpers.process_alive(p) for p in tree), "the grace period runs"

    helpers.poll(lambda: pods.get(cluster, namespace, "stubborn") is None, timeout=60, what="the pod to go")
    helpers.poll(
        lambda: not any(helpers.process_alive(p) for p in tree), timeout=10, what="the processes to die"
    )
    assert "got TERM" in log.read_text()
    reasons = [e["reason"] for e in pods.events(cluster, namespace, "stubborn")]
    assert "Killing" in reasons


def test_scale_down_removes_pods_and_processes(cluster: cluster_mod.Cluster, namespace: str):
    template = pods.python_pod(
        "x", "import time\nwhile True: time.sleep(1)", terminationGracePeriodSeconds=30
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sleepers"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "sleepers"}},
            "template": {"metadata": {"labels": {"app": "sleepers"}}, "spec": template["spec"]},
        },
    }
    pods.apply(cluster, namespace, deployment)

    def all_running() -> list[pods.Obj] | None:
        found = pods.listed(cluster, namespace, "app=sleepers")
        ok = len(found) == 3 and all(pods.container_status(p).get("started") for p in found)
        return found if ok else None

    before = {
        p["metadata"]["name"]: pods.process_tree(pods.shim_pid(p))
        for p in helpers.poll(all_running, timeout=60, what="3 pods")
    }
    cluster.kubectl("scale", "deployment", "sleepers", "-n", namespace, "--replicas=1")
    remaining = helpers.poll(
        lambda: (found := pods.listed(cluster, namespace, "app=sleepers")) and len(found) == 1 and found,
        timeout=60,
        what="two pods to go",
    )
    kept = remaining[0]["metadata"]["name"]
    assert kept in before
    for name, tree in before.items():
        if name == kept:
            assert all(helpers.process_alive(p) for p in tree), "the kept pod's processes run on"
        else:
            helpers.poll(
                lambda t=tree: not any(helpers.process_alive(p) for p in t), timeout=10, what=f"{name} dead"
            )


def _port_events(cluster: cluster_mod.Cluster, namespace: str, pod: str) -> list[pods.Obj]:
    return [e for e in pods.events(cluster, namespace, pod) if e["reason"] == "PortInUse"]


def test_port_clash_waits_with_an_event(cluster: cluster_mod.Cluster, namespace: str):
    taken = procs.free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", taken))
    listener.listen()
    serve = (
        "import http.server, os\n"
        "address = ('127.0.0.1', int(os.environ['PORT']))\n"
        "http.server.HTTPServer(address, http.server.BaseHTTPRequestHandler).serve_forever()"
    )
    ports = {"ports": [{"containerPort": taken}], "env": [{"name": "PORT", "value": str(taken)}]}
    try:
        pods.apply(cluster, namespace, pods.python_pod("first", serve, container=ports))
        events = helpers.poll(
            lambda: _port_events(cluster, namespace, "first"), timeout=30, what="a PortInUse event"
        )
        assert events[0]["type"] == "Warning"
        assert f"port(s) [{taken}] already listening on the node" in events[0]["message"]
        pod = pods.get(cluster, namespace, "first")
        assert pod is not None and pods.phase(pod) == "Pending"
        assert pods.container_status(pod)["state"]["waiting"]["reason"] == "PortInUse"
    finally:
        listener.close()
    pods.wait(
        cluster, namespace, "first", "Running once the port is free", lambda p: pods.phase(p) == "Running"
    )

    pods.apply(cluster, namespace, pods.python_pod("second", serve, container=ports))
    events = helpers.poll(
        lambda: _port_events(cluster, namespace, "second"), timeout=30, what="a PortInUse event"
    )
    assert "already declared by pod first on this node" in events[0]["message"], json.dumps(events)
    pod = pods.get(cluster, namespace, "second")
    assert pod is not None and pods.phase(pod) == "Pending"


def test_pods_outlive_an_apiserver_restart(cluster: cluster_mod.Cluster, namespace: str):
    pods.apply(cluster, namespace, pods.python_pod("steady", "import time\nwhile True: time.sleep(1)"))
    pod = pods.wait(
        cluster, namespace, "steady", "started", lambda p: pods.container_status(p).get("started")
    )
    tree = pods.process_tree(pods.shim_pid(pod))
    cluster.restart_apiserver()
    # The agent keeps its pods and goes on reporting: a deletion still ends in removal.
    assert all(helpers.process_alive(p) for p in tree)
    cluster.kubectl("delete", "pod", "steady", "-n", namespace, "--wait=false")
    helpers.poll(lambda: pods.get(cluster, namespace, "steady") is None, timeout=60, what="the pod to go")
    helpers.poll(lambda: not any(helpers.process_alive(p) for p in tree), timeout=10, what="its processes")
