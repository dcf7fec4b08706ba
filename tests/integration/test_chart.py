"""The Helm chart (charts/longtask) renders, validates and installs.

Covers: `helm lint --strict`; every key of values.yaml documented with a `# --` comment
and the file pointing at its schema; the default render (operator Deployment with two
replicas, RollingUpdate, leader election env (lease namespace and identity from the pod),
a PDB and soft anti-affinity, `longtask operator`, REDIS_URL from the Redis Secret, metrics
port, one status-stream consumer name shared by the replicas, readiness and liveness probes
on Kopf's /healthz, a Role for leases; one Recreate operator without leader election, and
no probes with ports 0; one worker pool with /healthz probes; the gateway Deployment (2
replicas, 2 processes, PDB) and Service with a /readyz readiness and a /healthz liveness
probe, auth on
(LONGTASK_AUTH; tokenreviews and subjectaccessreviews in its RBAC), or off, its own
first sends on (LONGTASK_GATEWAY_DISPATCH) or off, and CORS origins; the built-in Redis
StatefulSet with AOF and a volume claim, a generated password in a Secret (stdin, not argv;
REDISCLI_AUTH for its probes; a high UID) or the user's Secret; NetworkPolicies (Redis from
longtask's pods only, metrics from the scrapers, the gateway open; off by a value); the
exact RBAC rules; the `helm test` hook); external Sentinels' env; images by digest;
the default pool autoscaled (a WorkerPool, 1 to 10, and no fixed replicas); the CRDs only
in crds/ (left out of a plain render, the files verbatim with `--include-crds`, kept on
uninstall); names within 63 characters and selectors that are subsets of the pod
labels; a render with an external Redis (by URL or by Secret) and two fixed worker
pools, each its own Deployment with its own command, concurrency, task modules, lease and
grace period; values.schema.json refusing bad values (and the removed `crds.install`) with
the offending field named; clear failures for a missing Redis and for a repeated pool
name; `helm install` into the embedded cluster, over CRDs someone else applied with
kubectl (Helm leaves them as they are), creating the Deployments (which get ReplicaSets),
the WorkerPools, the StatefulSet, the Services, the NetworkPolicies and PDBs, and working
RBAC (leases in the release's namespace); an upgrade that changes the image (selectors stay
put) and keeps the Redis password (lookup); uninstall removing the cluster-scoped RBAC while keeping
the CRDs.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtask_dev import binaries, platform
from longtask_dev import cluster as cluster_mod
from tests import helpers

CHART = binaries.REPO_ROOT / "charts" / "longtask"
CRD_NAME = "longtasks.longtask.io"
SCHEDULE_CRD = "longtaskschedules.longtask.io"
EXTERNAL_REDIS = "redis://redis.shared.svc:6379/3"
Helm = Callable[..., subprocess.CompletedProcess[str]]
Manifests = list[dict[str, Any]]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory, go_tool: Callable[[str], Path]) -> Helm:
    """Run the cached helm binary with its own config/cache folders (never the user's)."""
    binary = go_tool("helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "HOME": str(home),  # the Kubernetes client's discovery cache goes to $HOME/.kube
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, check=False, timeout=60
        )
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result

    return run


def render(helm: Helm, *args: str, release: str = "lt") -> Manifests:
    out = helm("template", release, str(CHART), "--namespace", "jobs", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def one(manifests: Manifests, kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} among {[(m['kind'], m['metadata']['name']) for m in manifests]}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or the valueFrom dict) of a container's environment."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def rules(manifests: Manifests, name: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a ClusterRole grants."""
    role = one(manifests, "ClusterRole", name)
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def grants(group: str, resources: list[str], verbs: list[str]) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources for v in verbs}


REDIS_URL_REF = {"secretKeyRef": {"name": "lt-longtask-redis", "key": "url"}}


def secret_data(manifests: Manifests, name: str = "lt-longtask-redis") -> dict[str, str]:
    """The decoded data of one of the rendered Secrets."""
    secret = one(manifests, "Secret", name)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


# -- lint and documentation -------------------------------------------------------------


def test_helm_lint_strict_passes(helm: Helm):
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def _undocumented_keys(text: str) -> list[str]:
    """Keys of a values.yaml with no `# --` comment, unless inside a documented value.

    A key without a comment is fine only as a block of keys that are all documented.
    """
    missing: list[str] = []
    stack: list[dict[str, Any]] = []  # open keys: indent, path, documented, has_keys

    def close(indent: int) -> None:
        while stack and stack[-1]["indent"] >= indent:
            key = stack.pop()
            if not key["documented"] and not key["has_keys"]:
                missing.append(key["path"])

    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_]+):(.*)$", line)
        if not match:  # blank lines, list items: they belong to a key above
            comments = []
            continue
        indent, key, value = len(match[1]), match[2], match[3].strip()
        close(indent)
        documented = any(c.startswith("# --") for c in comments)
        comments = []
        if any(k["documented"] for k in stack):
            continue  # part of a documented value, e.g. podSecurityContext.runAsUser
        if stack:
            stack[-1]["has_keys"] = True
        path = f"{stack[-1]['path']}.{key}" if stack else key
        if value and not documented:
            missing.append(path)
        elif not value:
            stack.append({"indent": indent, "path": path, "documented": documented, "has_keys": False})
    close(0)
    return missing


def test_every_value_is_documented_and_the_schema_is_named():
    text = (CHART / "values.yaml").read_text()
    assert "values.schema.json" in text.splitlines()[0]
    assert _undocumented_keys(text) == []
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    for block in ("image", "operator", "workers", "api", "redis", "test"):
        assert schema["properties"][block]["additionalProperties"] is False, block


# -- default render ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default(helm: Helm) -> Manifests:
    return render(helm)


def test_default_render_has_every_component(default: Manifests):
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in default)
    assert kinds == sorted(
        [
            ("ServiceAccount", "lt-longtask-operator"),
            ("ServiceAccount", "lt-longtask-api"),
            ("ServiceAccount", "lt-longtask-worker"),
            ("ClusterRole", "lt-longtask-operator"),
            ("ClusterRole", "lt-longtask-api"),
            ("ClusterRoleBinding", "lt-longtask-operator"),
            ("ClusterRoleBinding", "lt-longtask-api"),
            ("Role", "lt-longtask-operator-leader"),
            ("RoleBinding", "lt-longtask-operator-leader"),
            ("PodDisruptionBudget", "lt-longtask-operator"),
            ("PodDisruptionBudget", "lt-longtask-api"),
            ("NetworkPolicy", "lt-longtask-redis"),
            ("NetworkPolicy", "lt-longtask-operator"),
            ("NetworkPolicy", "lt-longtask-worker"),
            ("NetworkPolicy", "lt-longtask-api"),
            ("NetworkPolicy", "lt-longtask-test"),
            ("Secret", "lt-longtask-redis"),
            ("Deployment", "lt-longtask-operator"),
            ("Deployment", "lt-longtask-api"),
            ("Deployment", "lt-longtask-worker-default"),
            ("WorkerPool", "lt-longtask-worker-default"),
            ("StatefulSet", "lt-longtask-redis"),
            ("Service", "lt-longtask-api"),
            ("Service", "lt-longtask-redis"),
            ("Service", "lt-longtask-redis-headless"),
            ("Pod", "lt-longtask-test-healthz"),
        ]
    )


def test_operator_deployment(default: Manifests):
    deployment = one(default, "Deployment", "lt-longtask-operator")
    # Two replicas with leader election: one leads, the other stands by; rolling updates.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    c = container(deployment)
    assert c["command"] == ["longtask", "operator"]
    assert c["image"] == "ghcr.io/longtask/longtask:0.1.0", "the tag defaults to appVersion"
    variables = env(c)
    assert variables["REDIS_URL"] == REDIS_URL_REF
    assert variables["LONGTASK_METRICS_PORT"] == "9090"
    # One consumer name shared by both replicas: a new leader reads its predecessor's
    # pending status entries as its own backlog.
    assert variables["LONGTASK_CONSUMER"] == "lt-longtask-operator"
    assert variables["LONGTASK_LEADER_ELECTION"] == "true"
    assert variables["LONGTASK_LEADER_LEASE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert variables["LONGTASK_LEADER_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["ports"] == [
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        {"name": "health", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert variables["LONGTASK_METRICS_HOST"] == "0.0.0.0", "reachable by Prometheus"
    # Kopf's own liveness endpoint: the event loop answers it, so a wedged loop fails it.
    assert (variables["LONGTASK_HEALTH_PORT"], variables["LONGTASK_HEALTH_HOST"]) == ("8081", "0.0.0.0")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "lt-longtask-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == deployment["spec"]["selector"]["matchLabels"]
    )
    pdb = one(default, "PodDisruptionBudget", "lt-longtask-operator")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}


def test_operator_lease_rights_and_one_operator_without_election(helm: Helm):
    manifests = render(helm)
    role = one(manifests, "Role", "lt-longtask-operator-leader")
    assert role["metadata"]["namespace"] == "jobs"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"],
        }
    ]
    binding = one(manifests, "RoleBinding", "lt-longtask-operator-leader")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lt-longtask-operator", "namespace": "jobs"}
    ]

    single = render(helm, "--set", "operator.leaderElection.enabled=false", "--set", "operator.replicas=1")
    deployment = one(single, "Deployment", "lt-longtask-operator")
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]) == (1, {"type": "Recreate"})
    assert env(container(deployment))["LONGTASK_LEADER_ELECTION"] == "false"
    assert not [m for m in single if m["kind"] in ("Role", "RoleBinding")]
    result = helm("template", "lt", str(CHART), "--set", "operator.leaderElection.enabled=false", check=False)
    assert result.returncode != 0 and "operator.replicas > 1 needs operator.leaderElection" in result.stderr

    quiet = render(helm, "--set", "operator.metrics.port=0", "--set", "operator.health.port=0")
    c = container(one(quiet, "Deployment", "lt-longtask-operator"))
    assert "ports" not in c and "livenessProbe" not in c and "readinessProbe" not in c


def test_operator_rbac_is_exactly_what_it_needs(default: Manifests):
    assert rules(default, "lt-longtask-operator") == (
        grants("longtask.io", ["longtasks"], ["get", "list", "watch", "create", "patch", "update", "delete"])
        | grants("longtask.io", ["longtasks/status"], ["get", "patch", "update"])
        | grants("longtask.io", ["longtaskschedules"], ["get", "list", "watch"])
        | grants("longtask.io", ["longtaskschedules/status"], ["get", "patch"])
        | grants("longtask.io", ["longtaskschedules/finalizers"], ["update"])
        | grants("longtask.io", ["workerpools"], ["get", "list", "watch"])
        | grants("longtask.io", ["workerpools/status"], ["get", "patch", "update"])
        | grants("apps", ["deployments"], ["list", "watch"])
        | grants("apps", ["deployments/scale"], ["get", "patch", "update"])
        | grants("", ["pods"], ["list", "watch", "patch"])
        | grants("", ["events"], ["create", "patch"])
        | grants("events.k8s.io", ["events"], ["create", "patch"])
        | grants("", ["namespaces"], ["get", "list", "watch"])
        | grants("apiextensions.k8s.io", ["customresourcedefinitions"], ["list", "watch"])
    )
    binding = one(default, "ClusterRoleBinding", "lt-longtask-operator")
    assert binding["roleRef"]["name"] == "lt-longtask-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lt-longtask-operator", "namespace": "jobs"}
    ]


API_TASK_RIGHTS = (
    grants("longtask.io", ["longtasks"], ["create", "get", "list", "patch"])
    | grants("longtask.io", ["workerpools"], ["get", "list", "watch"])
    | grants("", ["namespaces"], ["get", "list", "watch"])  # who may use which pool
    | grants("longtask.io", ["longtaskschedules"], ["get", "list", "patch"])  # schedules, suspend
)
API_REVIEW_RIGHTS = grants("authentication.k8s.io", ["tokenreviews"], ["create"]) | grants(
    "authorization.k8s.io", ["subjectaccessreviews"], ["create"]
)


def test_api_deployment_service_and_rbac(default: Manifests):
    deployment = one(default, "Deployment", "lt-longtask-api")
    c = container(deployment)
    assert c["command"] == ["longtask", "api", "--host=0.0.0.0", "--port=8080"]
    assert env(c) == {
        "REDIS_URL": REDIS_URL_REF,
        "LONGTASK_GATEWAY_PROCESSES": "2",
        "LONGTASK_AUTH": "true",
        "LONGTASK_GATEWAY_DISPATCH": "true",
    }
    assert deployment["spec"]["replicas"] == 2
    assert c["resources"]["limits"]["cpu"] == "2", "room for its 2 processes"
    assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]
    assert one(default, "PodDisruptionBudget", "lt-longtask-api")["spec"]["maxUnavailable"] == 1
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(default, "Service", "lt-longtask-api")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    # Auth on (the default): it asks the apiserver about each caller, and acts on LongTasks.
    assert rules(default, "lt-longtask-api") == API_TASK_RIGHTS | API_REVIEW_RIGHTS


def test_api_auth_and_dispatch_off_and_cors_origins(helm: Helm):
    manifests = render(
        helm,
        "--set",
        "api.auth.enabled=false",
        "--set",
        "api.dispatch.enabled=false",
        "--set",
        "api.corsOrigins={https://a.example,http://b:8000}",
    )
    variables = env(container(one(manifests, "Deployment", "lt-longtask-api")))
    assert variables["LONGTASK_AUTH"] == "false"
    assert variables["LONGTASK_GATEWAY_DISPATCH"] == "false"
    assert variables["LONGTASK_CORS_ORIGINS"] == "https://a.example,http://b:8000"
    assert rules(manifests, "lt-longtask-api") == API_TASK_RIGHTS, "no reviews without auth"


def test_default_worker_pool(default: Manifests):
    deployment = one(default, "Deployment", "lt-longtask-worker-default")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 3600
    assert pod["automountServiceAccountToken"] is False
    c = container(deployment)
    assert c["command"] == ["longtask", "worker", "--pool", "default"]
    assert env(c) == {
        "REDIS_URL": REDIS_URL_REF,
        "LONGTASK_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "LONGTASK_CONCURRENCY": "2",
        "LONGTASK_TASK_MODULES": "",
        "LONGTASK_LEASE_SECONDS": "30",
        "LONGTASK_METRICS_PORT": "9808",
        "LONGTASK_METRICS_HOST": "0.0.0.0",
        "LONGTASK_HEALTH_STALE_SECONDS": "60",
    }
    # The worker's main process answers /healthz on the metrics port (liveness.py).
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # Autoscaled by default: the operator owns the replicas, from 1 (a first task starts at once).
    assert "replicas" not in deployment["spec"]
    assert one(default, "WorkerPool", "lt-longtask-worker-default")["spec"] == {
        "deployment": "lt-longtask-worker-default",
        "pool": "default",
        "minReplicas": 1,
        "maxReplicas": 10,
        "cooldownSeconds": 60,
        "maxScaleUpStep": 10,
        "namespaceSelector": {},  # every namespace may use the chart's pools
    }


def test_builtin_redis_keeps_an_append_only_file(default: Manifests):
    statefulset = one(default, "StatefulSet", "lt-longtask-redis")
    c = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "redis:7.4.2"
    script = c["command"][2]
    assert "--appendonly yes" in script
    assert "--appendfsync everysec" in script
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert statefulset["spec"]["serviceName"] == "lt-longtask-redis-headless"
    assert one(default, "Service", "lt-longtask-redis")["spec"]["ports"][0]["port"] == 6379


def test_builtin_redis_asks_for_a_generated_password(helm: Helm, default: Manifests):
    data = secret_data(default)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", data["password"])
    assert data["url"] == f"redis://:{data['password']}@lt-longtask-redis.jobs.svc:6379/0"
    assert secret_data(render(helm))["password"] != data["password"], "no cluster to look up: a new one"
    c = container(one(default, "StatefulSet", "lt-longtask-redis"))
    # The password reaches redis-server on stdin, from the environment: never in argv.
    assert c["command"][:2] == ["sh", "-c"]
    assert (
        c["command"][2].startswith("exec redis-server ")
        and ' - <<EOF\nrequirepass "$REDISCLI_AUTH"\nEOF' in c["command"][2]
    )
    assert env(c) == {"REDISCLI_AUTH": {"secretKeyRef": {"name": "lt-longtask-redis", "key": "password"}}}
    pod = one(default, "StatefulSet", "lt-longtask-redis")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["fsGroup"] >= 10000
    assert c["securityContext"]["readOnlyRootFilesystem"] is True

    own = render(
        helm,
        "--set",
        "redis.auth.existingSecret=my-redis",
        "--set-json",
        'redis.extraArgs=["--maxmemory","1gb"]',
    )
    assert not [m for m in own if m["kind"] == "Secret"]
    c = container(one(own, "StatefulSet", "lt-longtask-redis"))
    assert env(c)["REDISCLI_AUTH"] == {"secretKeyRef": {"name": "my-redis", "key": "password"}}
    assert c["command"][3:] == ["redis-server", "--maxmemory", "1gb"]
    operator = container(one(own, "Deployment", "lt-longtask-operator"))
    assert env(operator)["REDIS_URL"] == {"secretKeyRef": {"name": "my-redis", "key": "url"}}


def test_network_policies(helm: Helm, default: Manifests):
    redis = one(default, "NetworkPolicy", "lt-longtask-redis")["spec"]
    (rule,) = redis["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["operator", "api", "worker"]}
    ]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "lt"
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    for name in ("lt-longtask-operator", "lt-longtask-worker"):
        (rule,) = one(default, "NetworkPolicy", name)["spec"]["ingress"]
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        assert rule["from"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ]
    (rule,) = one(default, "NetworkPolicy", "lt-longtask-api")["spec"]["ingress"]
    assert "from" not in rule, "the API is open to every caller (auth checks them)"
    for policy in (m for m in default if m["kind"] == "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open"
    assert not [
        m for m in render(helm, "--set", "networkPolicy.enabled=false") if m["kind"] == "NetworkPolicy"
    ]


def test_external_sentinels(helm: Helm, tmp_path: Path):
    values = {
        "redis": {
            "enabled": False,
            "external": {
                "url": "rediss://:pw@ignored:6379/2",
                "sentinels": ["s1.example:26379", "s2.example:26379", "s3.example:26379"],
                "masterName": "jobs",
                "sentinelPassword": {"existingSecret": "sentinel-creds"},
            },
        }
    }
    manifests = render(helm, "-f", values_file(tmp_path, values))
    assert secret_data(manifests) == {"url": "rediss://:pw@ignored:6379/2"}
    for name in ("lt-longtask-operator", "lt-longtask-api", "lt-longtask-worker-default"):
        variables = env(container(one(manifests, "Deployment", name)))
        assert variables["REDIS_URL"] == REDIS_URL_REF
        assert variables["LONGTASK_REDIS_SENTINELS"] == "s1.example:26379,s2.example:26379,s3.example:26379"
        assert variables["LONGTASK_REDIS_MASTER"] == "jobs"
        assert variables["LONGTASK_REDIS_SENTINEL_PASSWORD"] == {
            "secretKeyRef": {"name": "sentinel-creds", "key": "sentinel-password"}
        }
    assert not [
        m for m in manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].endswith("redis")
    ]


def test_images_by_digest(helm: Helm):
    digest = "sha256:" + "a" * 64
    manifests = render(
        helm, "--set", f"image.digest={digest}", "--set", f"redis.image.digest={digest}",
        "--set", f"test.image.digest={digest}",
    )  # fmt: skip
    assert container(one(manifests, "Deployment", "lt-longtask-api"))["image"].endswith(f":0.1.0@{digest}")
    assert container(one(manifests, "StatefulSet", "lt-longtask-redis"))["image"] == f"redis:7.4.2@{digest}"
    pod = one(manifests, "Pod", "lt-longtask-test-healthz")
    assert pod["spec"]["containers"][0]["image"] == f"curlimages/curl:8.11.1@{digest}"
    # Pinned by digest, the digest check is no longer skipped.
    annotations = one(manifests, "Deployment", "lt-longtask-api")["metadata"]["annotations"]
    assert not [v for v in annotations.values() if v.startswith("CKV_K8S_43=")]


def test_crds_come_verbatim_from_the_crds_folder_and_are_kept(helm: Helm, default: Manifests):
    """Helm creates crds/ before the templates (a first install may render WorkerPools)."""
    assert "CustomResourceDefinition" not in {m["kind"] for m in default}, "not a template"
    rendered = [m for m in render(helm, "--include-crds") if m["kind"] == "CustomResourceDefinition"]
    files = [yaml.safe_load(f.read_text()) for f in sorted(platform.CRD_DIR.glob("*.yaml"))]
    assert platform.CRD_DIR == CHART / "crds", "the one source, which `dev up` applies too"
    assert sorted(rendered, key=lambda m: m["metadata"]["name"]) == files
    assert [m["metadata"]["name"] for m in files] == [CRD_NAME, SCHEDULE_CRD, "workerpools.longtask.io"]
    for crd in files:  # an upgrade from CRDs in templates/ must not delete them either
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not (CHART / "templates" / "crds").exists()


def test_the_test_hook_calls_healthz(default: Manifests):
    pod = one(default, "Pod", "lt-longtask-test-healthz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][-1] == "http://lt-longtask-api.jobs.svc:8080/healthz"


def test_labels_selectors_and_name_lengths(helm: Helm):
    release = "r" * 53  # the longest release name Helm accepts
    manifests = render(helm, release=release)
    kinds_and_names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(set(kinds_and_names)) == len(kinds_and_names), "shortened names must not collide"
    for m in manifests:
        assert len(m["metadata"]["name"]) <= 63, m["metadata"]["name"]
        if m["kind"] == "StatefulSet":  # its pods get controller-revision-hash=<name>-<10 chars>
            assert len(m["metadata"]["name"]) <= 52, m["metadata"]["name"]
        if m["kind"] == "CustomResourceDefinition":
            continue
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == release
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/name"] == "longtask"
        if m["kind"] in ("Deployment", "StatefulSet"):
            selector = m["spec"]["selector"]["matchLabels"]
            pod_labels = m["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items()
            assert "app.kubernetes.io/version" not in selector
            assert "helm.sh/chart" not in selector


# -- external Redis and worker pools ----------------------------------------------------


def test_external_redis_and_two_worker_pools(helm: Helm, tmp_path: Path):
    values = {
        "redis": {"enabled": False, "external": {"url": EXTERNAL_REDIS}},
        "image": {"repository": "registry.example/longtask", "tag": "1.2.3"},
        "workers": {
            "poolDefaults": {"leaseSeconds": 45, "autoscaling": {"enabled": False}},
            "pools": [
                {"name": "default", "concurrency": 8, "taskModules": ["acme.tasks", "acme.reports"]},
                {
                    "name": "gpu",
                    "replicas": 0,
                    "concurrency": 1,
                    "terminationGracePeriodSeconds": 7200,
                    "leaseSeconds": 60,
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                },
            ],
        },
    }
    manifests = render(helm, "-f", values_file(tmp_path, values))
    assert not [m for m in manifests if m["kind"] == "StatefulSet"]
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests if "redis" in m["metadata"]["name"]] == [
        ("Secret", "lt-longtask-redis")
    ], "only the Secret holding the URL"
    assert secret_data(manifests) == {"url": EXTERNAL_REDIS}

    default = one(manifests, "Deployment", "lt-longtask-worker-default")
    gpu = one(manifests, "Deployment", "lt-longtask-worker-gpu")
    assert container(default)["command"] == ["longtask", "worker", "--pool", "default"]
    assert container(gpu)["command"] == ["longtask", "worker", "--pool", "gpu"]
    assert env(container(default)) == {
        "REDIS_URL": REDIS_URL_REF,
        "LONGTASK_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "LONGTASK_CONCURRENCY": "8",
        "LONGTASK_TASK_MODULES": "acme.tasks,acme.reports",
        "LONGTASK_LEASE_SECONDS": "45",
        "LONGTASK_METRICS_PORT": "9808",
        "LONGTASK_METRICS_HOST": "0.0.0.0",
        "LONGTASK_HEALTH_STALE_SECONDS": "60",
    }
    assert env(container(gpu)) == {
        "REDIS_URL": REDIS_URL_REF,
        "LONGTASK_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "LONGTASK_CONCURRENCY": "1",
        "LONGTASK_TASK_MODULES": "",
        "LONGTASK_LEASE_SECONDS": "60",
        "LONGTASK_METRICS_PORT": "9808",
        "LONGTASK_METRICS_HOST": "0.0.0.0",
        "LONGTASK_HEALTH_STALE_SECONDS": "60",
    }
    assert default["spec"]["replicas"] == 1
    assert gpu["spec"]["replicas"] == 0, "replicas 0 is an override, not 'unset'"
    assert default["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3600
    assert gpu["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 7200
    assert container(gpu)["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert container(default)["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}, "the default"
    # The pools select only their own pods.
    assert gpu["spec"]["selector"]["matchLabels"]["longtask.io/pool"] == "gpu"
    assert default["spec"]["selector"]["matchLabels"]["longtask.io/pool"] == "default"

    for name in ("lt-longtask-operator", "lt-longtask-api"):
        c = container(one(manifests, "Deployment", name))
        assert env(c)["REDIS_URL"] == REDIS_URL_REF
        assert c["image"] == "registry.example/longtask:1.2.3"


def test_every_container_has_requests_and_limits_and_redis_an_exact_tag(default: Manifests):
    for m in default:
        spec = m.get("spec", {}).get("template", {}).get("spec") or (
            m["spec"] if m["kind"] == "Pod" else None
        )
        for c in (spec or {}).get("containers", []):
            assert set(c["resources"]) == {"requests", "limits"}, (m["kind"], m["metadata"]["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) & set(c["resources"]["limits"])
    redis_image = container(one(default, "StatefulSet", "lt-longtask-redis"))["image"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+", redis_image), redis_image


def test_autoscaled_pools_get_a_workerpool_and_no_fixed_replicas(helm: Helm, tmp_path: Path):
    values = {
        "workers": {
            "poolDefaults": {"autoscaling": {"maxReplicas": 8, "cooldownSeconds": 120}},
            "pools": [
                {"name": "default", "autoscaling": {"enabled": False}},
                {"name": "batch", "concurrency": 4, "autoscaling": {"minReplicas": 0}},
                {"name": "private", "namespaceSelector": None},
                {"name": "ml", "namespaceSelector": {"matchLabels": {"longtask.io/team": "ml"}}},
            ],
        },
    }
    manifests = render(helm, "-f", values_file(tmp_path, values))
    pools = [m for m in manifests if m["kind"] == "WorkerPool"]
    assert [p["metadata"]["name"] for p in pools] == [
        "lt-longtask-worker-batch",
        "lt-longtask-worker-private",
        "lt-longtask-worker-ml",
    ], "a fixed pool has none"
    assert pools[0]["spec"] == {
        "deployment": "lt-longtask-worker-batch",
        "pool": "batch",
        "minReplicas": 0,  # a 0 override is kept, the other keys come from poolDefaults
        "maxReplicas": 8,
        "cooldownSeconds": 120,
        "maxScaleUpStep": 10,
        "namespaceSelector": {},
    }
    assert "namespaceSelector" not in pools[1]["spec"], "null: the release's namespace only"
    assert pools[2]["spec"]["namespaceSelector"] == {"matchLabels": {"longtask.io/team": "ml"}}
    assert "replicas" not in one(manifests, "Deployment", "lt-longtask-worker-batch")["spec"]
    assert one(manifests, "Deployment", "lt-longtask-worker-default")["spec"]["replicas"] == 1


def test_external_redis_url_from_a_secret(helm: Helm):
    for prefix in ("redis.external", "redis"):  # the value's name, and its older name
        manifests = render(
            helm, "--set", "redis.enabled=false", "--set", f"{prefix}.existingSecret.name=redis-credentials"
        )
        c = container(one(manifests, "Deployment", "lt-longtask-operator"))
        assert env(c)["REDIS_URL"] == {"secretKeyRef": {"name": "redis-credentials", "key": "redis-url"}}
        assert not [m for m in manifests if m["kind"] == "Secret"]
    manifests = render(helm, "--set", "redis.enabled=false", "--set", f"redis.url={EXTERNAL_REDIS}")
    assert secret_data(manifests) == {"url": EXTERNAL_REDIS}, "the older redis.url still works"


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "api.replicas=two"], "at '/api/replicas': got string, want integer"),
        (["--set-string", "workers.pools[0].replicas=2"], "at '/workers/pools/0/replicas'"),
        (["--set", "api.replica=2"], "at '/api': additional properties 'replica' not allowed"),
        (["--set", "workers.pools[0].name=GPU_pool"], "at '/workers/pools/0/name'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "redis.url=localhost:6379"], "at '/redis/url'"),
        (["--set", "redis.external.url=localhost:6379"], "at '/redis/external/url'"),
        (["--set", "redis.external.sentinels={s1}"], "at '/redis/external/sentinels/0'"),
        (["--set", "redis.image.digest=latest"], "at '/redis/image/digest'"),
        (["--set-string", "api.auth.enabled=yes"], "at '/api/auth/enabled'"),
        (["--set", "api.corsOrigins={*}"], "at '/api/corsOrigins/0'"),
        # Gone with the CRDs' move to crds/: `helm install --skip-crds` does what it did.
        (["--set", "crds.install=false"], "additional properties 'crds' not allowed"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(helm: Helm, args: list[str], message: str):
    result = helm("template", "lt", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_disabled_redis_without_url_fails_clearly(helm: Helm):
    result = helm("template", "lt", str(CHART), "--set", "redis.enabled=false", check=False)
    assert result.returncode != 0
    assert "set redis.external.url (or redis.external.existingSecret.name)" in result.stderr, result.stderr


def test_repeated_pool_name_fails(helm: Helm):
    result = helm(
        "template", "lt", str(CHART),
        "--set", "workers.pools[0].name=batch", "--set", "workers.pools[1].name=batch",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'the pool name "batch" appears twice' in result.stderr, result.stderr


# -- a real install ---------------------------------------------------------------------


@pytest.fixture
def kube_helm(helm: Helm, cluster: cluster_mod.Cluster) -> Helm:
    """helm against the embedded cluster."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return helm(*args, "--kubeconfig", str(cluster.kubeconfig), check=check)

    return run


@pytest.fixture
def crd_applied(cluster: cluster_mod.Cluster) -> None:
    """The CRDs as the dev platform applies them (kubectl server-side apply, not Helm)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(platform.CRD_DIR))
    for crd in (CRD_NAME, SCHEDULE_CRD, "workerpools.longtask.io"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")


@pytest.fixture
def release(kube_helm: Helm, namespace: str) -> Iterator[str]:
    """A release name, uninstalled afterwards (its ClusterRoles outlive the namespace)."""
    name = f"lt-{uuid.uuid4().hex[:6]}"
    yield name
    kube_helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "60s", check=False)


def _names(cluster: cluster_mod.Cluster, kind: str, namespace: str, release: str) -> list[str]:
    out = cluster.kubectl(
        "get", kind, "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "name"
    ).stdout
    return sorted(out.split())


def _can(cluster: cluster_mod.Cluster, account: str, verb: str, resource: str, *extra: str) -> bool:
    result = cluster.kubectl("auth", "can-i", f"--as={account}", verb, resource, *extra, check=False)
    return result.stdout.strip() == "yes"


def test_helm_install_upgrade_uninstall(
    cluster: cluster_mod.Cluster, kube_helm: Helm, crd_applied: None, namespace: str, release: str
):
    pools = ["--set", "workers.pools[0].name=default", "--set", "workers.pools[1].name=batch"]
    # The CRDs exist already (applied with kubectl): Helm leaves them as they are and goes on.
    kube_helm("install", release, str(CHART), "--namespace", namespace, *pools)
    fullname = f"{release}-longtask"
    deployments = [
        f"deployment.apps/{fullname}-api",
        f"deployment.apps/{fullname}-operator",
        f"deployment.apps/{fullname}-worker-batch",
        f"deployment.apps/{fullname}-worker-default",
    ]
    assert _names(cluster, "deployments", namespace, release) == deployments
    assert _names(cluster, "workerpools", namespace, release) == [
        f"workerpool.longtask.io/{fullname}-worker-batch",
        f"workerpool.longtask.io/{fullname}-worker-default",
    ]
    assert _names(cluster, "statefulsets", namespace, release) == [f"statefulset.apps/{fullname}-redis"]
    assert _names(cluster, "services", namespace, release) == [
        f"service/{fullname}-api",
        f"service/{fullname}-redis",
        f"service/{fullname}-redis-headless",
    ]
    # The controller manager turns each Deployment into a ReplicaSet.
    helpers.poll(
        lambda: len(_names(cluster, "replicasets", namespace, release)) == len(deployments),
        timeout=60,
        what="a ReplicaSet per Deployment",
    )

    # The ServiceAccounts' rights, as the apiserver decides them.
    operator = f"system:serviceaccount:{namespace}:{fullname}-operator"
    api = f"system:serviceaccount:{namespace}:{fullname}-api"
    worker = f"system:serviceaccount:{namespace}:{fullname}-worker"
    assert _can(cluster, operator, "watch", "longtasks.longtask.io", "--all-namespaces")
    assert _can(cluster, operator, "patch", "longtasks.longtask.io", "--subresource=status", "-n", "other")
    assert _can(cluster, operator, "create", "events", "-n", "other")
    # A schedule's runs: the operator creates them, cancels (patch) and deletes old ones.
    assert _can(cluster, operator, "create", "longtasks.longtask.io", "-n", "other")
    assert _can(cluster, operator, "watch", "longtaskschedules.longtask.io", "--all-namespaces")
    assert _can(
        cluster, operator, "patch", "longtaskschedules.longtask.io", "--subresource=status", "-n", "o"
    )
    assert not _can(cluster, operator, "patch", "longtaskschedules.longtask.io", "-n", "other"), "status only"
    assert _can(cluster, api, "create", "longtasks.longtask.io", "-n", "other")
    assert not _can(cluster, api, "delete", "longtasks.longtask.io", "-n", "other")
    assert _can(cluster, api, "create", "tokenreviews.authentication.k8s.io")
    assert _can(cluster, api, "create", "subjectaccessreviews.authorization.k8s.io")
    assert not _can(cluster, worker, "get", "longtasks.longtask.io", "-n", namespace)
    # The autoscaler's rights: WorkerPools, Deployments' scale, pods' deletion cost.
    assert _can(cluster, operator, "watch", "workerpools.longtask.io", "--all-namespaces")
    # Who may use which pool: both follow WorkerPools and Namespaces.
    for account in (operator, api):
        assert _can(cluster, account, "watch", "namespaces")
        assert _can(cluster, account, "watch", "workerpools.longtask.io", "--all-namespaces")
    assert _can(cluster, operator, "patch", "workerpools.longtask.io", "--subresource=status", "-n", "other")
    assert _can(cluster, operator, "patch", "deployments.apps", "--subresource=scale", "-n", "other")
    assert not _can(cluster, operator, "patch", "deployments.apps", "-n", "other"), "scale only"
    assert _can(cluster, operator, "patch", "pods", "-n", "other")
    assert not _can(cluster, operator, "delete", "pods", "-n", "other")
    # Leader election: leases in the release's namespace only.
    assert _can(cluster, operator, "update", "leases.coordination.k8s.io", "-n", namespace)
    assert not _can(cluster, operator, "update", "leases.coordination.k8s.io", "-n", "other")
    assert len(_names(cluster, "networkpolicies", namespace, release)) == 5
    assert len(_names(cluster, "poddisruptionbudgets", namespace, release)) == 2

    def password() -> str:
        out = cluster.kubectl(
            "get", "secret", f"{fullname}-redis", "-n", namespace, "-o", "jsonpath={.data.password}"
        ).stdout  # fmt: skip
        return base64.b64decode(out).decode()

    before = password()
    assert len(before) == 32

    # Selector labels never change, so an upgrade to a new image goes through.
    kube_helm(
        "upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values",
        "--set", "image.tag=0.2.0",
    )  # fmt: skip
    image = cluster.kubectl(
        "get", "deployment", f"{fullname}-operator", "-n", namespace,
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout  # fmt: skip
    assert image == "ghcr.io/longtask/longtask:0.2.0"
    assert password() == before, "an upgrade keeps the generated Redis password"

    kube_helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    roles = cluster.kubectl(
        "get", "clusterroles", "-l", f"app.kubernetes.io/instance={release}", "-o", "name"
    )
    assert roles.stdout.strip() == ""
    crd = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    annotations = crd["metadata"].get("annotations", {})
    assert "meta.helm.sh/release-name" not in annotations, "untouched: no release took it over"
