"""The whole longtask platform as local processes on top of the embedded Cluster.

CRDs, operator, worker(s) and gateway, each a real process started the way a user would
start it (`longtask operator`, `longtask worker`, `longtask api`). It must not reach into
the components' internals: it only starts, stops and waits for them.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from longtask_dev import binaries, cluster, procs

CRD_DIR = binaries.REPO_ROOT / "charts" / "longtask" / "crds"
WORKERPOOL_EXAMPLE = binaries.REPO_ROOT / "examples" / "workerpool.yaml"
# What examples/workerpool.yaml's workers read REDIS_URL (key url) and, with `--redis-ha`,
# LONGTASK_REDIS_SENTINELS and LONGTASK_REDIS_MASTER (keys sentinels, master) from.
REDIS_SECRET = "longtask-redis"
DEMO_TASKS = "longtask_worker.tasks.demo,longtask_worker.tasks.docs,longtask_worker.tasks.agent"
DEV_ACCOUNT = "longtask-dev"  # the ServiceAccount whose token `dev up --auth` hands to the CLI


def user_role(name: str, *, kind: str = "ClusterRole", namespace: str | None = None) -> dict[str, Any]:
    """A Role (or ClusterRole) allowing every gateway route: what a LongTask user needs."""
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "rules": [
            {
                "apiGroups": ["longtask.io"],
                "resources": ["longtasks"],
                "verbs": ["create", "get", "list", "watch", "patch"],
            },
            {"apiGroups": ["longtask.io"], "resources": ["workerpools"], "verbs": ["list"]},
            {
                "apiGroups": ["longtask.io"],
                "resources": ["longtaskschedules"],
                "verbs": ["get", "list", "patch"],
            },
            {
                "apiGroups": ["longtask.io"],
                "resources": ["longtasks/deadletters"],
                "verbs": ["list", "patch"],
            },
        ],
    }


def worker_pool_manifests(
    *,
    pool: str,
    min_replicas: int,
    max_replicas: int,
    tasks_per_replica: int | None = None,
    cooldown_seconds: float = 30,
    concurrency: int = 4,
    task_modules: str = DEMO_TASKS,
    grace_seconds: int = 600,
    extra_env: dict[str, str] | None = None,
    namespace_selector: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """examples/workerpool.yaml (a Deployment and its WorkerPool), made for `pool`; its
    WorkerPool admits its own namespace only, or the namespaces `namespace_selector`
    selects (`{}`: every namespace)."""
    deployment, workerpool = (
        copy.deepcopy(doc) for doc in yaml.safe_load_all(WORKERPOOL_EXAMPLE.read_text()) if doc
    )
    name = f"{pool}-workers"
    deployment["metadata"]["name"] = name
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"],
    ):
        labels["longtask.io/pool"] = pool
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = grace_seconds
    container = pod["containers"][0]
    container["command"] = [
        "longtask", "worker", "--pool", pool, "--concurrency", str(concurrency), "--tasks", task_modules,
    ]  # fmt: skip
    container["env"] += [{"name": k, "value": v} for k, v in (extra_env or {}).items()]
    deployment["spec"]["replicas"] = min_replicas
    workerpool["metadata"]["name"] = pool
    workerpool["spec"].update(
        deployment=name,
        pool=pool,
        minReplicas=min_replicas,
        maxReplicas=max_replicas,
        cooldownSeconds=cooldown_seconds,
    )
    if namespace_selector is not None:
        workerpool["spec"]["namespaceSelector"] = namespace_selector
    workerpool["spec"].pop("tasksPerReplica", None)
    if tasks_per_replica is not None:
        workerpool["spec"]["tasksPerReplica"] = tasks_per_replica
    return [deployment, workerpool]


# The operator's exit status when it stops leading (longtask_operator.leader.LOST_EXIT_CODE).
LOST_LEASE_EXIT = 3


def operator_leads(metrics_url: str) -> bool | None:
    """Whether the operator serving `metrics_url` leads (its longtask_operator_leader is 1),
    waits as a standby (0), or neither: not answering, or not yet a candidate (None)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith("longtask_operator_leader{"):
            return float(line.rsplit(" ", 1)[1]) == 1.0
    return None


def longtask_argv(*args: str) -> list[str]:
    """The `longtask` CLI as a child process of this interpreter."""
    return [sys.executable, "-m", "longtask_cli", *args]


class Platform:
    """A Cluster plus CRDs, operator, workers and gateway. Use start() / stop()."""

    def __init__(self, c: cluster.Cluster, *, api_port: int = 0, auth: bool = False) -> None:
        self.cluster = c
        self.api_port = api_port or procs.free_port()
        self.auth = auth
        self.operator_metrics_port = procs.free_port()
        self.operator_health_port = procs.free_port()
        self.operator_metrics_urls: dict[str, str] = {}  # by process name (start_operator)
        self.operator_health_urls: dict[str, str] = {}
        self._workers = 0
        # /metrics of pool pods (worker_metrics_env) and of workers started by start_worker
        # (by process name), in start order; see worker_metrics_urls.
        self._pool_metrics_urls: list[str] = []
        self._worker_metrics: dict[str, str] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, *, workers: int = 1) -> Platform:
        self.apply_crds()
        self.start_operator()
        for _ in range(workers):
            self.start_worker()
        self.start_api()
        if self.auth:
            self.cluster.append_env(LONGTASK_TOKEN=self.dev_token())
        self.cluster.append_env(
            LONGTASK_API=self.api_url,
            LONGTASK_METRICS_OPERATOR=self.operator_metrics_url,
            LONGTASK_METRICS_API=f"{self.api_url}/metrics",
        )
        if self.worker_metrics_urls:
            self.cluster.append_env(LONGTASK_METRICS_WORKER=self.worker_metrics_urls[0])
        return self

    @property
    def worker_metrics_urls(self) -> list[str]:
        """/metrics of the pool pods and of the workers still running; the env file names
        the first. A stopped worker's URL is gone: a scraper would find it down."""
        running = {child.name for child in self.cluster.children if child.alive()}
        return [
            *self._pool_metrics_urls,
            *(url for name, url in self._worker_metrics.items() if name in running),
        ]

    @property
    def operator_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.operator_metrics_port}/metrics"

    def worker_metrics_env(self) -> dict[str, str]:
        """Env giving a worker pool's pods a metrics port. Pods on the local node share the
        host's network: the first pod to start gets the port, later ones serve no metrics
        (a worker never fails over its metrics); the URL is recorded and returned."""
        port = procs.free_port()
        self._pool_metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
        return {"LONGTASK_METRICS_PORT": str(port)}

    def apply_worker_pool(self, manifests: list[dict[str, Any]], *, namespace: str = "default") -> None:
        """Apply a worker Deployment and its WorkerPool (worker_pool_manifests): the
        operator scales it, and the cluster's local node runs its pods as processes."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": REDIS_SECRET},
            "stringData": {
                "url": self.cluster.redis_url,
                **{key: value for key, value in self.redis_secret_keys().items() if value},
            },
        }
        docs = yaml.safe_dump_all([secret, *manifests])
        self.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=docs)

    def redis_secret_keys(self) -> dict[str, str]:
        """The Secret's Sentinel keys (empty without `--redis-ha`)."""
        env = self.cluster.redis_env()
        return {
            "sentinels": env.get("LONGTASK_REDIS_SENTINELS", ""),
            "master": env.get("LONGTASK_REDIS_MASTER", ""),
        }

    def wait_metrics(self, url: str, *, timeout: float = 60) -> None:
        """Wait until a metrics URL answers (a worker pod serves it shortly after it starts)."""
        procs.wait_until(lambda: procs.http_ok(url), timeout=timeout, what=f"metrics at {url}")

    def wait_workers_ready(self, deployment: str, *, replicas: int = 1, namespace: str = "default") -> None:
        self.cluster.kubectl(
            "wait",
            "-n",
            namespace,
            f"--for=jsonpath={{.status.readyReplicas}}={replicas}",
            "--timeout=120s",
            f"deployment/{deployment}",
        )

    def apply_crds(self) -> None:
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def _log(self, name: str) -> Path:
        return self.cluster.state_dir / "logs" / f"{name}.log"

    def start_operator(
        self,
        *,
        extra_env: dict[str, str] | None = None,
        name: str = "operator",
        standby: bool = False,
    ) -> procs.Child:
        """Start an operator and wait until it leads (or, `standby`, until it waits as a
        standby). The first, "operator", has the platform's metrics and health ports and
        the leader identity `dev-<name>` across restarts, so a restarted one takes its own
        Lease back at once; another `name` gets ports of its own (operator_metrics_urls)."""
        if name == "operator":
            metrics_port, health_port = self.operator_metrics_port, self.operator_health_port
        else:
            metrics_port, health_port = procs.free_port(), procs.free_port()
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.operator_metrics_urls[name] = url
        self.operator_health_urls[name] = f"http://127.0.0.1:{health_port}/healthz"
        env = dict(
            self.cluster.environ(),
            LONGTASK_METRICS_PORT=str(metrics_port),
            LONGTASK_HEALTH_PORT=str(health_port),
            LONGTASK_LEADER_IDENTITY=f"dev-{name}",
            **(extra_env or {}),
        )
        child = self.cluster.add(procs.Child(name, longtask_argv("operator"), self._log(name), env=env))
        self._restart_when_it_loses_the_lease(child)
        procs.wait_until(
            lambda: operator_leads(url) is (not standby),
            timeout=60,
            what=f"{name} to {'wait as a standby' if standby else 'lead'}",
            child=child,
            interval=0.1,
        )
        return child

    def _restart_when_it_loses_the_lease(self, child: procs.Child) -> None:
        """Start the operator again whenever it exits with LOST_LEASE_EXIT (as the kubelet
        restarts its container): e.g. after the apiserver was away for longer than the renew
        deadline. It comes back as a candidate. A killed or stopped operator stays down."""

        def watch() -> None:
            while child in self.cluster.children:
                popen = child.popen
                if popen is not None and popen.poll() == LOST_LEASE_EXIT and child in self.cluster.children:
                    child.start()
                time.sleep(0.2)

        threading.Thread(target=watch, name=f"restart {child.name}", daemon=True).start()

    def kill_operator(self, name: str = "operator") -> None:
        """SIGKILL the operator, as a crash or an evicted pod would end it."""
        child = self.cluster.child(name)
        child.kill()
        self.cluster.children.remove(child)

    def stop_child(self, child: procs.Child) -> None:
        child.stop()
        self.cluster.children.remove(child)

    def start_worker(
        self,
        *,
        pool: str = "default",
        concurrency: int = 2,
        tasks: str = DEMO_TASKS,
        extra_env: dict[str, str] | None = None,
    ) -> procs.Child:
        self._workers += 1
        name = f"worker-{pool}-{self._workers}"
        env = {**self.cluster.environ(), "LONGTASK_METRICS_PORT": str(procs.free_port()), **(extra_env or {})}
        if env["LONGTASK_METRICS_PORT"] != "0":
            self._worker_metrics[name] = f"http://127.0.0.1:{env['LONGTASK_METRICS_PORT']}/metrics"
        child = self.cluster.add(
            procs.Child(
                name,
                longtask_argv(
                    "worker",
                    "--pool",
                    pool,
                    "--concurrency",
                    str(concurrency),
                    "--tasks",
                    tasks,
                    "--name",
                    name,
                ),
                self._log(name),
                env=env,
            )
        )
        # Celery logs "<name>@<host> ready." once it consumes from its queue.
        procs.wait_until(
            lambda: " ready." in child.log_tail(200),
            timeout=60,
            what=f"{name} to consume",
            child=child,
            interval=0.1,
        )
        return child

    def start_api(
        self, *, port: int | None = None, auth: bool | None = None, extra_env: dict[str, str] | None = None
    ) -> procs.Child:
        """The gateway on `port` (default: this platform's); start more than one on other ports."""
        port = port or self.api_port
        enabled = self.auth if auth is None else auth
        env = dict(self.cluster.environ(), LONGTASK_AUTH=str(enabled).lower(), **(extra_env or {}))
        name = "api" if port == self.api_port else f"api-{port}"
        child = self.cluster.add(
            procs.Child(name, longtask_argv("api", "--port", str(port)), self._log(name), env=env)
        )
        procs.wait_until(
            lambda: procs.http_ok(f"http://127.0.0.1:{port}/healthz"),
            timeout=60,
            what=f"the gateway's /healthz on port {port}",
            child=child,
        )
        return child

    def dev_token(self, *, duration: str = "8760h") -> str:
        """A token of ServiceAccount `longtask-dev`, allowed every gateway route in every namespace.

        The token comes from the TokenRequest API (`kubectl create token`), valid for `duration`.
        """
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": DEV_ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DEV_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": DEV_ACCOUNT, "namespace": "default"}],
        }
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEV_ACCOUNT}}
        docs = yaml.safe_dump_all([account, user_role(DEV_ACCOUNT), binding])
        self.cluster.kubectl("apply", "-n", "default", "-f", "-", input=docs)
        token = self.cluster.kubectl(
            "create", "token", DEV_ACCOUNT, "-n", "default", f"--duration={duration}"
        ).stdout
        return token.strip()
