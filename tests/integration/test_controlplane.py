"""The embedded control plane is a real Kubernetes API.

Covers: a CRD and a custom resource applied with kubectl; an invalid resource rejected
with the field named; a Deployment becoming a ReplicaSet and scheduled Pods through the
controller manager and scheduler; `helm install` of a chart; the Python client
(kubernetes_asyncio) connecting with the generated kubeconfig.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from longtask_dev import binaries, platform
from longtask_dev import cluster as cluster_mod
from tests import helpers

pytestmark = pytest.mark.cluster

SLEEP = {
    "apiVersion": "longtask.io/v1alpha1",
    "kind": "LongTask",
    "metadata": {"name": "plain"},
    "spec": {"task": "demo.sleep"},
}


def test_crd_and_custom_resource_with_kubectl(cluster: cluster_mod.Cluster, kubectl, namespace):
    kubectl("apply", "-f", str(platform.CRD_DIR))
    kubectl("wait", "--for=condition=Established", "crd/longtasks.longtask.io", "--timeout=30s")
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(SLEEP))
    got = json.loads(kubectl("get", "lt", "plain", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["task"] == "demo.sleep"
    assert got["spec"]["retry"]["maxRetries"] == 3, "CRD defaults are applied by the apiserver"


def test_invalid_custom_resource_is_rejected_with_the_field_named(kubectl, namespace):
    kubectl("apply", "-f", str(platform.CRD_DIR))
    bad = dict(SLEEP, spec={"task": "Not A Task!"})
    result = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0
    assert "spec.task" in result.stderr, result.stderr


def test_deployment_becomes_replicaset_and_scheduled_pods(cluster, kubectl, namespace):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "example/none"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(deployment))
    helpers.poll(
        lambda: kubectl("get", "rs", "-n", namespace, "-l", "app=web", "-o", "name").stdout.strip(),
        timeout=60,
        what="a ReplicaSet",
    )

    def scheduled_pods() -> list[dict]:
        pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout)
        return [p for p in pods["items"] if p["spec"].get("nodeName") == cluster_mod.NODE_NAME]

    pods = helpers.poll(
        lambda: len(scheduled_pods()) == 2 and scheduled_pods(), timeout=60, what="two pods bound to the node"
    )
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"ReplicaSet"}


def test_helm_install_of_a_chart(cluster, namespace, tmp_path: Path):
    helm = binaries.ensure("helm")["helm"]
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "hello", "version": "0.1.0"})
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    result = subprocess.run(
        [
            str(helm),
            "install",
            "hi",
            str(chart),
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "60s",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = cluster.kubectl("get", "cm", "hi-cm", "-n", namespace, "-o", "jsonpath={.data.greeting}").stdout
    assert data == "hello"


async def test_python_client_connects_with_the_kubeconfig(cluster: cluster_mod.Cluster):
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    async with api:
        version = await client.VersionApi(api).get_code()
        nodes = await client.CoreV1Api(api).list_node()
    assert version.git_version.startswith("v1.")
    assert cluster_mod.NODE_NAME in [n.metadata.name for n in nodes.items]
