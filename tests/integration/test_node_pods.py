"""Pods scheduled to the local node run as real processes with what their spec promises.

Covers: a Deployment's pod becomes Running, then Ready only once its httpGet readiness
probe passes (conditions, containerStatuses, podIP/hostIP 127.0.0.1, startTime); its env
resolved from value, `$(VAR)` expansion, fieldRef (name, namespace, uid, nodeName,
serviceAccountName, podIP, hostIP, a label, an annotation), secretKeyRef, configMapKeyRef,
optional references to missing objects, envFrom with a prefix, KUBERNETES_SERVICE_HOST and
_PORT; `$(VAR)` in args; the hostname is the pod's name; an emptyDir is mounted at /tmp;
the container's stdout lands in the pod's log file; an in-cluster client
(kubernetes_asyncio's load_incluster_config) inside a pod reads the API with the pod's
projected service-account token, while a pod with automountServiceAccountToken false has
no token; Kopf (`kopf run`, handlers from a configMap volume) logs in with the pod's
token files and watches what its Role allows; a Service's DNS names lead to its pod on
the node (port = targetPort), and a Service with no pod here has no name in the pods'
/etc/hosts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from longtask_dev import binaries, procs
from longtask_dev import cluster as cluster_mod
from tests import helpers, pods

pytestmark = pytest.mark.cluster

SERVER = """
import http.server, json, os, socket, sys
ready = False
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global ready
        if self.path == "/ready" and not ready:
            self.send_response(503); self.end_headers(); return
        if self.path == "/go":
            ready = True
        body = json.dumps({
            "env": dict(os.environ), "argv": sys.argv[1:], "hostname": socket.gethostname(),
            "tmp": sorted(os.listdir("/tmp")),
        }).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        pass
print("serving on", os.environ["PORT"], flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _deployment(port: int) -> pods.Obj:
    template = pods.python_pod(
        "unused",
        SERVER,
        args=["$(GREETING)-$(POD_NAME)", "$$(literal)"],
        metadata={"labels": {"app": "echo"}, "annotations": {"note": "annotated"}},
        volumes=[{"name": "tmp", "emptyDir": {}}],
        container={
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "env": [
                {"name": "PORT", "value": str(port)},
                {"name": "GREETING", "value": "hello"},
                {"name": "EXPANDED", "value": "$(GREETING) world"},
                *(
                    {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                    for name, path in [
                        ("POD_NAME", "metadata.name"),
                        ("POD_NAMESPACE", "metadata.namespace"),
                        ("POD_UID", "metadata.uid"),
                        ("NODE", "spec.nodeName"),
                        ("ACCOUNT", "spec.serviceAccountName"),
                        ("POD_IP", "status.podIP"),
                        ("HOST_IP", "status.hostIP"),
                        ("LABEL", "metadata.labels['app']"),
                        ("NOTE", "metadata.annotations['note']"),
                    ]
                ),
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {
                    "name": "ABSENT",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}},
                },
            ],
        },
    )
    metadata = {k: v for k, v in template["metadata"].items() if k != "name"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {"metadata": metadata, "spec": template["spec"]},
        },
    }


def _node_keeps() -> list[str]:
    """Host folders the node keeps visible in every pod (see podworker's "keep")."""
    return [str(binaries.REPO_ROOT), sys.prefix, sys.base_prefix]


def _get_json(url: str) -> Any:
    try:
        return httpx.get(url, timeout=10).json()
    except httpx.ConnectError:
        return None


def test_deployment_pod_runs_with_resolved_env_and_readiness(cluster: cluster_mod.Cluster, namespace: str):
    port = procs.free_port()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"password": "s3cret"},
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"mode": "fast"},
    }
    pods.apply(cluster, namespace, secret, config, _deployment(port))

    def running() -> pods.Obj | None:
        found = pods.listed(cluster, namespace, "app=echo")
        return found[0] if found and pods.container_status(found[0]).get("started") else None

    pod = helpers.poll(running, timeout=60, what="the echo pod's container to start")
    name = pod["metadata"]["name"]
    # The readiness probe answers 503 until /go was called: Running, but not Ready. The
    # process has started; its server listens a moment later.
    status = helpers.poll(lambda: _get_json(f"http://127.0.0.1:{port}/"), timeout=30, what="the echo server")
    pod = pods.get(cluster, namespace, name)
    assert pod is not None and pods.phase(pod) == "Running"
    assert pods.condition(pod, "Ready") == "False" and pods.condition(pod, "ContainersReady") == "False"
    assert pods.condition(pod, "PodScheduled") == "True" and pods.condition(pod, "Initialized") == "True"
    httpx.get(f"http://127.0.0.1:{port}/go", timeout=10)
    pod = pods.wait(cluster, namespace, name, "Ready", lambda p: pods.condition(p, "Ready") == "True")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == "127.0.0.1"
    assert pod["status"]["startTime"]
    container = pods.container_status(pod)
    assert container["ready"] is True and container["restartCount"] == 0
    assert "running" in container["state"]

    env = status["env"]
    assert env["POD_NAME"] == name and status["hostname"] == name
    assert env["POD_NAMESPACE"] == namespace
    assert env["POD_UID"] == pod["metadata"]["uid"]
    assert env["NODE"] == cluster_mod.NODE_NAME
    assert env["ACCOUNT"] == "default"
    assert env["POD_IP"] == env["HOST_IP"] == "127.0.0.1"
    assert (env["LABEL"], env["NOTE"]) == ("echo", "annotated")
    assert (env["PASSWORD"], env["MODE"], env["CFG_mode"]) == ("s3cret", "fast", "fast")
    assert env["EXPANDED"] == "hello world"
    assert "ABSENT" not in env
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == str(cluster.api_port)
    assert "KUBECONFIG" not in env, "the agent's own environment must not leak into pods"
    assert status["argv"] == [f"hello-{name}", "$(literal)"]
    # /tmp is the pod's emptyDir: empty, but for the project and its Python if they live
    # under /tmp on this machine (the node keeps them visible).
    kept = {Path(p).relative_to("/tmp").parts[0] for p in _node_keeps() if Path(p).is_relative_to("/tmp")}
    assert set(status["tmp"]) == kept
    log = cluster.pod_log(namespace=namespace, pod=name, container="app")
    assert f"serving on {port}" in log.read_text()
    reasons = {e["reason"] for e in pods.events(cluster, namespace, name)}
    assert {"Scheduled", "Started"} <= reasons


IN_CLUSTER = """
import asyncio
from kubernetes_asyncio import client, config

async def main():
    config.load_incluster_config()
    namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
    async with client.ApiClient() as api:
        listing = await client.CoreV1Api(api).list_namespaced_pod(namespace)
    print("SEES", " ".join(sorted(p.metadata.name for p in listing.items)), flush=True)

asyncio.run(main())
"""

NO_TOKEN = """
import os, sys
path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
print("TOKEN", os.path.exists(path), flush=True)
sys.exit(1 if os.path.exists(path) else 0)
"""


def test_in_cluster_client_uses_the_projected_token(cluster: cluster_mod.Cluster, namespace: str):
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    reader = pods.python_pod("reader", IN_CLUSTER, restartPolicy="Never")
    tokenless = pods.python_pod(
        "tokenless", NO_TOKEN, restartPolicy="Never", automountServiceAccountToken=False
    )
    pods.apply(cluster, namespace, role, binding, reader, tokenless)

    done = ("Succeeded", "Failed")
    reader_pod = pods.wait(cluster, namespace, "reader", "to finish", lambda p: pods.phase(p) in done)
    log = cluster.pod_log(namespace=namespace, pod="reader", container="app").read_text()
    assert pods.phase(reader_pod) == "Succeeded", log
    assert "SEES" in log and "reader" in log.split("SEES", 1)[1], log
    assert pods.container_status(reader_pod)["state"]["terminated"]["exitCode"] == 0
    assert any(v.get("projected") for v in reader_pod["spec"]["volumes"]), "admission projects the token"

    tokenless_pod = pods.wait(cluster, namespace, "tokenless", "to finish", lambda p: pods.phase(p) in done)
    log = cluster.pod_log(namespace=namespace, pod="tokenless", container="app").read_text()
    assert pods.phase(tokenless_pod) == "Succeeded", log
    assert "TOKEN False" in log


CLIENT = """
import os, urllib.request
url = f"http://web.{os.environ['NS']}.svc:{os.environ['PORT']}/"
print("STATUS", urllib.request.urlopen(url, timeout=10).status, flush=True)
print("GHOST", "ghost" in open("/etc/hosts").read(), flush=True)
"""


def test_service_names_resolve_to_the_node_while_their_pods_run(cluster: cluster_mod.Cluster, namespace: str):
    port = procs.free_port()
    serve = (
        "import http.server, sys\n"
        "address = ('127.0.0.1', int(sys.argv[1]))\n"
        "http.server.HTTPServer(address, http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    web = pods.python_pod(
        "web",
        serve,
        args=[str(port)],
        metadata={"labels": {"app": "web"}},
        container={"ports": [{"containerPort": port}]},
    )

    def service(name: str, selector: str, service_port: int) -> pods.Obj:
        spec = {"selector": {"app": selector}, "ports": [{"port": service_port, "targetPort": service_port}]}
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}

    pods.apply(cluster, namespace, web, service("web", "web", port), service("ghost", "ghost", 6379))
    pods.wait(cluster, namespace, "web", "Ready", lambda p: pods.condition(p, "Ready") == "True")
    env = [
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "PORT", "value": str(port)},
    ]
    pods.apply(
        cluster, namespace, pods.python_pod("client", CLIENT, restartPolicy="Never", container={"env": env})
    )
    client = pods.wait(
        cluster, namespace, "client", "to finish", lambda p: pods.phase(p) in ("Succeeded", "Failed")
    )
    log = cluster.pod_log(namespace=namespace, pod="client", container="app").read_text()
    assert pods.phase(client) == "Succeeded", log
    assert "STATUS 200" in log
    assert "GHOST False" in log, "a Service with no pod on the node has no name"


KOPF_HANDLERS = """
import kopf

@kopf.on.event("configmaps")
def seen(name, type, **_):
    print("KOPF SAW", type, name, flush=True)
"""


def test_kopf_logs_in_with_the_pod_token(cluster: cluster_mod.Cluster, namespace: str):
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "configmap-watcher"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "configmap-watcher"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-watcher"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    code = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "code"},
        "data": {"h.py": KOPF_HANDLERS},
    }
    operator = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kopf"},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "code", "configMap": {"name": "code"}}],
            "containers": [
                {
                    "name": "app",
                    "image": "python:3.11",
                    "command": [
                        "kopf",
                        "run",
                        "/code/h.py",
                        "--standalone",
                        "--verbose",
                        f"--namespace={namespace}",
                    ],
                    "volumeMounts": [{"name": "code", "mountPath": "/code", "readOnly": True}],
                }
            ],
        },
    }
    # Kopf also watches namespaces and CRDs cluster-wide, even when it serves one namespace.
    scan = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"kopf-scan-{namespace}"},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "verbs": ["list", "watch"],
            },
        ],
    }
    scan_binding = binding | {"kind": "ClusterRoleBinding", "metadata": {"name": f"kopf-scan-{namespace}"}}
    scan_binding["roleRef"] = scan_binding["roleRef"] | {
        "kind": "ClusterRole",
        "name": f"kopf-scan-{namespace}",
    }
    try:
        pods.apply(cluster, namespace, scan, scan_binding, role, binding, code, operator)
        log = cluster.pod_log(namespace=namespace, pod="kopf", container="app")
        # Kopf lists the ConfigMaps it may see once logged in: "code" is one.
        helpers.poll(
            lambda: log.exists() and "KOPF SAW None code" in log.read_text(), timeout=60, what="Kopf"
        )
        cluster.kubectl("create", "configmap", "trigger", "-n", namespace)
        helpers.poll(
            lambda: "KOPF SAW ADDED trigger" in log.read_text(), timeout=60, what="Kopf to see a new one"
        )
        assert "Client is configured in cluster with service account" in log.read_text()
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", f"kopf-scan-{namespace}", check=False)
