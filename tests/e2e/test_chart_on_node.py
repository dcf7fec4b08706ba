"""The Helm chart, installed on an embedded cluster, runs for real on the local node.

Covers: `helm install` on a cluster without the CRDs (Helm creates them from the chart's
crds/ before the WorkerPool that needs them; the built-in Redis without a volume claim (the
node mounts none) on a free port, ports picked free, the default pool autoscaled as by
default, a fixed pool with a metrics port) puts the Redis, two operators, gateway and worker
pods on the local node, Running and Ready (the gateway's readiness probe on /readyz, the
fixed pool's on the worker's /healthz); the built-in Redis asks for the generated password
of the chart's Secret (a connection without it is refused) and every component reads it
from REDIS_URL; the chart's commands, env and
RBAC suffice: the operator logs in with its pod's projected service-account token (Kopf,
in-cluster) and a LongTask applied with kubectl reaches Succeeded, run by the chart's
worker; the autoscaled pool's WorkerPool makes the in-cluster operator scale the worker
Deployment up for a backlog (its scale, pods and WorkerPool rights); the gateway, auth on,
refuses a caller without a token and reads the task back for one Kubernetes allows (with
its own TokenReview and SubjectAccessReview rights); `helm test` (the curl hook pod,
restartPolicy Never, the gateway's Service name in its /etc/hosts) passes; `helm
uninstall` removes the pods and ends their processes, and keeps the CRDs.

The cluster is this module's own: a session platform's operator, watching every
namespace of the session cluster, would otherwise handle the same LongTasks; and nothing
has applied the CRDs to it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from longtask_dev import binaries, procs
from longtask_dev import cluster as cluster_mod
from tests import helpers, lt, pods

pytestmark = pytest.mark.cluster

CHART = binaries.REPO_ROOT / "charts" / "longtask"
COMPONENTS = ("api", "operator", "operator", "redis", "worker", "worker")
CRDS = ("longtasks.longtask.io", "longtaskschedules.longtask.io", "workerpools.longtask.io")


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[cluster_mod.Cluster]:
    with cluster_mod.Cluster() as c:
        yield c


class Helm:
    def __init__(self, cluster: cluster_mod.Cluster, home: str) -> None:
        self.binary = str(binaries.ensure("helm")["helm"])
        self.kubeconfig = str(cluster.kubeconfig)
        self.env = {
            "HOME": home,
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_DATA_HOME": f"{home}/data",
            "PATH": "/usr/bin:/bin",
        }

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args, "--kubeconfig", self.kubeconfig],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=timeout,
        )
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}\n{result.stdout}"
        return result


@pytest.fixture(scope="module")
def release(
    own_cluster: cluster_mod.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The chart installed in a fresh namespace; uninstalled (and checked gone) at the end."""
    helm = Helm(own_cluster, str(tmp_path_factory.mktemp("helm-home")))
    namespace, name = f"chart-{uuid.uuid4().hex[:6]}", "lt"
    api_port, redis_port, probed_port = procs.free_port(), procs.free_port(), procs.free_port()
    for crd in CRDS:
        assert own_cluster.kubectl("get", "crd", crd, check=False).returncode != 0, "a cluster without CRDs"
    helm(
        "install", name, str(CHART), "--namespace", namespace, "--create-namespace",
        "--set", "redis.persistence.enabled=false",  # the node mounts no volume claims
        "--set", f"redis.service.port={redis_port}",
        "--set", f"api.port={api_port}",
        "--set", f"api.service.port={api_port}",  # no kube-proxy: Service port = container port
        "--set", "api.replicas=1",  # one node: one gateway port
        # Two operators (the chart's default) on one node: no metrics or health ports,
        # which both would want.
        "--set", "operator.metrics.port=0",
        "--set", "operator.health.port=0",
        "--set", "workers.poolDefaults.metrics.port=0",  # pods share the node's network
        # Autoscaling is on by default; only its range and cooldown are narrowed here. The
        # fixed pool `probed` has one pod with a metrics port: its probes ask its /healthz.
        "--set-json", 'workers.pools=[{"name": "default", "concurrency": 1, '
        '"taskModules": ["longtask_worker.tasks.demo"], "autoscaling": '
        '{"maxReplicas": 2, "cooldownSeconds": 5}}, {"name": "probed", "concurrency": 1, '
        f'"metrics": {{"port": {probed_port}}}, "autoscaling": {{"enabled": false}}}}]',
    )  # fmt: skip
    info = {
        "helm": helm,
        "namespace": namespace,
        "name": name,
        "api_port": api_port,
        "redis_port": redis_port,
        "probed_port": probed_port,
        "installed": True,
    }
    yield info
    if info["installed"]:
        helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "90s")


def _release_pods(cluster: cluster_mod.Cluster, info: dict[str, Any]) -> list[pods.Obj]:
    return pods.listed(cluster, info["namespace"], f"app.kubernetes.io/instance={info['name']}")


def test_chart_runs_a_task_end_to_end(own_cluster: cluster_mod.Cluster, release: dict[str, Any]):
    namespace = release["namespace"]

    def all_ready() -> list[pods.Obj] | None:
        found = _release_pods(own_cluster, release)
        components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in found)
        ready = all(pods.condition(p, "Ready") == "True" for p in found)
        return found if ready and components == sorted(COMPONENTS) else None

    try:
        running = helpers.poll(all_ready, timeout=120, what="operator, gateway and worker pods Ready")
    except AssertionError:
        for pod in _release_pods(own_cluster, release):
            name = pod["metadata"]["name"]
            log = own_cluster.pod_log(
                namespace=namespace, pod=name, container=pod["spec"]["containers"][0]["name"]
            )
            print(f"--- {name}: {pod.get('status')}\n{log.read_text() if log.exists() else '(no log)'}")
        raise
    assert {p["spec"]["nodeName"] for p in running} == {cluster_mod.NODE_NAME}
    operators = [p for p in running if p["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    assert len(operators) == 2 and all(p["status"]["phase"] == "Running" for p in operators)
    probed = [p for p in running if p["metadata"]["labels"].get("longtask.io/pool") == "probed"]
    assert probed and "readinessProbe" in probed[0]["spec"]["containers"][0], "Ready by its /healthz"
    health = httpx.get(f"http://127.0.0.1:{release['probed_port']}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["live"] is True

    # The built-in Redis asks for the chart's generated password.
    secret = json.loads(
        own_cluster.kubectl("get", "secret", "lt-longtask-redis", "-n", namespace, "-o", "json").stdout
    )
    password = base64.b64decode(secret["data"]["password"]).decode()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=release["redis_port"]).ping()
    assert redis.Redis(port=release["redis_port"], password=password).ping()

    lt.create(
        own_cluster.kubectl, namespace, "sleep-demo", task="demo.sleep", params={"seconds": 1, "steps": 2}
    )
    status = lt.wait_phase(own_cluster.kubectl, namespace, "sleep-demo", "Succeeded", timeout=90)
    assert status["progress"] == 100

    # A backlog of two one-slot tasks: the operator, in its pod, scales the pool to 2.
    for i in range(2):
        lt.create(own_cluster.kubectl, namespace, f"load-{i}", task="demo.sleep", params={"seconds": 4})

    def desired() -> int:
        out = own_cluster.kubectl(
            "get",
            "-n",
            namespace,
            "wp/lt-longtask-worker-default",
            "-o",
            "jsonpath={.status.desiredReplicas}",
        )
        return int(out.stdout or 0)

    helpers.poll(lambda: desired() == 2, timeout=60, what="the WorkerPool to want 2 workers")
    for i in range(2):
        lt.wait_phase(own_cluster.kubectl, namespace, f"load-{i}", "Succeeded", timeout=90)

    gateway = f"http://127.0.0.1:{release['api_port']}"
    assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200
    url = f"{gateway}/v1/namespaces/{namespace}/tasks/sleep-demo"
    assert httpx.get(url, timeout=10).status_code == 401, "auth is on by default"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {own_cluster.token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"]["phase"] == "Succeeded"

    tested = release["helm"]("test", release["name"], "--namespace", namespace, "--timeout", "90s")
    assert "Succeeded" in tested.stdout, tested.stdout

    trees = [pods.process_tree(pods.shim_pid(p, p["spec"]["containers"][0]["name"])) for p in running]
    release["helm"]("uninstall", release["name"], "--namespace", namespace, "--wait", "--timeout", "90s")
    release["installed"] = False
    helpers.poll(
        lambda: _release_pods(own_cluster, release) == [], timeout=90, what="the release's pods to go"
    )
    for tree in trees:
        helpers.poll(
            lambda t=tree: not any(helpers.process_alive(p) for p in t), timeout=30, what="pod processes"
        )
    for crd in CRDS:  # kept: deleting them would delete every LongTask and WorkerPool
        own_cluster.kubectl("get", "crd", crd)
