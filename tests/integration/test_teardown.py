"""Stopping the embedded cluster leaves nothing behind.

Covers: stop() ends every child process, every pod process of the local node (a child of
a pod's command included) and frees every port; a SIGKILLed node agent takes its pods'
whole process trees with it, and a SIGKILLed parent its children and their pods' processes
(no orphans); the temporary state folder is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from longtask_dev import cluster as cluster_mod
from tests import helpers, pods

pytestmark = pytest.mark.cluster


def _wait_dead(pids: list[int], timeout: float = 30) -> list[int]:
    """The pids still alive after waiting up to `timeout` for all of them to die."""
    with contextlib.suppress(AssertionError):
        helpers.poll(lambda: not any(helpers.process_alive(p) for p in pids), timeout=timeout, what="exit")
    return [p for p in pids if helpers.process_alive(p)]


# A pod whose command has a child of its own: the whole tree must go with the node.
FAMILY = "import subprocess, time\nsubprocess.Popen(['sleep', '3600'])\nwhile True: time.sleep(1)"


def _pod_processes(c: cluster_mod.Cluster) -> list[int]:
    """Run the FAMILY pod on the cluster's node; return its host process tree."""
    pods.apply(c, "default", pods.python_pod("family", FAMILY, terminationGracePeriodSeconds=3600))

    def tree() -> list[int] | None:
        pod = pods.get(c, "default", "family")
        if pod is None or not pods.container_status(pod).get("started"):
            return None
        found = pods.process_tree(pods.shim_pid(pod))
        return found if len(found) >= 4 else None  # shim, init, python, sleep

    found: list[int] = helpers.poll(tree, timeout=60, what="the family pod's processes")
    return found


def test_stop_leaves_no_process_port_or_folder():
    c = cluster_mod.Cluster().start()
    pids = [child.pid for child in c.children] + _pod_processes(c)
    ports = [c.api_port, c.redis_port]
    state = c.state_dir
    assert all(helpers.process_alive(p) for p in pids) and all(helpers.port_listening(p) for p in ports)
    c.stop()
    assert _wait_dead(pids, timeout=1) == []
    helpers.poll(
        lambda: not any(helpers.port_listening(p) for p in ports), timeout=15, what="every port to close"
    )
    assert not state.exists()


def test_a_sigkilled_node_agent_takes_its_pods_along():
    with cluster_mod.Cluster() as c:
        tree = _pod_processes(c)
        c.child("node-agent").kill()
        assert _wait_dead(tree) == [], "pod processes outlived their SIGKILLed node agent"


def test_children_die_with_a_sigkilled_parent():
    script = (
        "import json, sys, time\n"
        "from longtask_dev import cluster\n"
        "c = cluster.Cluster().start()\n"
        "info = {'pids': [ch.pid for ch in c.children], 'port': c.api_port, 'dir': str(c.state_dir)}\n"
        "print(json.dumps(info), flush=True)\n"
        "time.sleep(3600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        info = json.loads(parent.stdout.readline())
        info["pids"] += _pod_processes(cluster_mod.Cluster(state_dir=Path(info["dir"])))
        assert all(helpers.process_alive(p) for p in info["pids"])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _wait_dead(info["pids"]) == [], "children outlived their SIGKILLed parent"
        # A killed multi-threaded process shows as a zombie before its last thread has closed
        # its sockets: wait for the port itself.
        helpers.poll(
            lambda: not helpers.port_listening(info["port"]), timeout=15, what="the apiserver's port to close"
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if "info" in locals():
            shutil.rmtree(info["dir"], ignore_errors=True)  # a killed parent cannot clean up
