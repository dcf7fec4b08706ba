"""The embedded cluster: etcd, kube-apiserver, controller manager, scheduler, Redis and a local node.

It runs real upstream binaries as local child processes on loopback ports, writes a
kubeconfig usable by kubectl, helm, Kopf and the Python clients, and starts the node agent
(`node.py`), which registers the Node and runs the pods scheduled to it as local processes.
It must not know anything about longtask's own resources: `platform.py` builds on it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import yaml

from longtask_contracts import envvars
from longtask_dev import binaries, pki, procs, redisha

NODE_NAME = "longtask-node-0"
_SERVICE_CIDR = "10.96.0.0/12"
# What `longtask dev up` writes to the env file (.longtask/env) for a shell to source: written
# here and in platform.py, read by no longtask process (readers: none), documented all the same.
ENV_FILE = (
    envvars.written("KUBECONFIG", "The embedded cluster's kubeconfig, for kubectl, helm and the components."),
    envvars.written(
        "REDIS_URL",
        "Its Redis (with `--redis-ha`: the first primary's URL; the Sentinels below say where it is now).",
    ),
    envvars.written(
        "LONGTASK_REDIS_SENTINELS",
        "With `--redis-ha` only: its three Sentinels (docs/high-availability.md).",
    ),
    envvars.written(
        "LONGTASK_REDIS_MASTER", "With `--redis-ha` only: the master's name its Sentinels monitor."
    ),
    envvars.written("LONGTASK_API", "The local gateway's URL."),
    envvars.written(
        "LONGTASK_TOKEN",
        "With `--auth` only: a token of the longtask-dev ServiceAccount, which the CLI sends.",
    ),
    envvars.written("LONGTASK_METRICS_OPERATOR", "The operator's /metrics URL."),
    envvars.written("LONGTASK_METRICS_API", "The gateway's /metrics URL."),
    envvars.written("LONGTASK_METRICS_WORKER", "The first worker's /metrics URL (docs/metrics.md)."),
)


def redis_server_path() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise binaries.BinaryError(
            "redis-server is not installed: apt-get install redis-server (see .ci/run)"
        )
    return found


def redis_child(*, port: int, data: Path, log: Path) -> procs.Child:
    """A redis-server on 127.0.0.1:`port` keeping its AOF in `data` (not started yet).

    Also what the fast tests start on their own, without the rest of the cluster.
    """
    data.mkdir(parents=True, exist_ok=True)
    return procs.Child(
        "redis",
        [
            redis_server_path(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ],
        log,
    )


def wait_for_redis(*, port: int, child: procs.Child) -> None:
    """Return once the Redis on `port` answers PING; fail early with its log if it exits."""
    procs.wait_until(lambda: _redis_ping(port), timeout=30, what="redis PING", child=child)


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


class Cluster:
    """A local Kubernetes control plane, its node (child `node-agent`) and Redis, as one unit.

    Pods scheduled to NODE_NAME run as local processes; pod_log() says where their output goes.

    Use as a context manager, or call start() and stop(). With `state_dir` the files
    (kubeconfig, env, logs, data) stay there; without it a temporary folder is used and
    removed on stop. With `redis_ha` Redis is a primary, a replica and three Sentinels
    (redisha.py; `self.redis_ha`), and every component is pointed at the Sentinels.
    """

    def __init__(self, *, state_dir: Path | None = None, redis_ha: bool = False) -> None:
        self._owns_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="longtask-cluster-"))
        self.children: list[procs.Child] = []
        self.token = secrets.token_hex(16)
        self.api_port = 0
        self.redis_port = 0
        self.startup_seconds = 0.0
        self.redis_ha: redisha.RedisHA | None = None
        if redis_ha:
            self.redis_ha = redisha.RedisHA(
                state_dir=self.state_dir,
                server=redis_server_path(),
                add=self.add,
                redis_child=redis_child,
                wait_for_redis=wait_for_redis,
            )

    # -- paths ----------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _pki(self, name: str) -> str:
        return str(self.state_dir / "pki" / name)

    # -- lifecycle --------------------------------------------------------------
    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Cluster:
        tools = binaries.ensure(*binaries.CONTROL_PLANE)
        began = time.monotonic()
        try:
            self._prepare_files()
            self._start_etcd(tools["etcd"])
            self._start_apiserver(tools["kube-apiserver"])
            self._write_kubeconfig()
            self._start_controllers(tools)
            self._start_redis()
            self._start_node_agent()
            self._write_env()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the children in reverse order of start; remove the temporary state dir."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self._owns_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart_redis(self) -> None:
        """Restart Redis on the same port (SIGTERM: it writes its AOF before it exits); without
        redis_ha (with it, redis_ha.kill_primary() is the drill)."""
        wait_for_redis(port=self.redis_port, child=self.child("redis").restart())

    def restart_apiserver(self) -> None:
        child = self.child("kube-apiserver").restart()
        procs.wait_until(self._api_ready, timeout=90, what="kube-apiserver /readyz", child=child)

    def child(self, name: str) -> procs.Child:
        return next(c for c in self.children if c.name == name)

    def add(self, child: procs.Child) -> procs.Child:
        """Start and supervise one more child (stopped before the control plane)."""
        self.children.append(child.start())
        return child

    # -- components ------------------------------------------------------------
    def _prepare_files(self) -> None:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        pki.write_pki(self.state_dir / "pki")
        (self.state_dir / "pki" / "tokens.csv").write_text(
            f'{self.token},longtask-admin,longtask-admin,"system:masters"\n'
        )

    def _log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _start_etcd(self, etcd: Path) -> None:
        client, peer = procs.free_port(), procs.free_port()
        data = self.state_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        self._etcd_url = f"http://127.0.0.1:{client}"
        child = self.add(
            procs.Child(
                "etcd",
                [
                    str(etcd),
                    "--name=default",
                    f"--data-dir={data}",
                    f"--listen-client-urls={self._etcd_url}",
                    f"--advertise-client-urls={self._etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-cluster=default=http://127.0.0.1:{peer}",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                self._log("etcd"),
            )
        )
        procs.wait_until(
            lambda: procs.http_ok(f"{self._etcd_url}/health"), timeout=30, what="etcd /health", child=child
        )

    def _start_apiserver(self, apiserver: Path) -> None:
        self.api_port = procs.free_port()
        child = self.add(
            procs.Child(
                "kube-apiserver",
                [
                    str(apiserver),
                    f"--etcd-servers={self._etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    # Loopback may not be advertised through the `kubernetes` Service's endpoints;
                    # pods of the local node reach the apiserver through KUBERNETES_SERVICE_HOST
                    # and _PORT (127.0.0.1 and this port), which the node agent sets.
                    "--endpoint-reconciler-type=none",
                    f"--secure-port={self.api_port}",
                    f"--cert-dir={self.state_dir / 'pki'}",
                    f"--tls-cert-file={self._pki('serving.crt')}",
                    f"--tls-private-key-file={self._pki('serving.key')}",
                    f"--client-ca-file={self._pki('ca.crt')}",
                    f"--token-auth-file={self._pki('tokens.csv')}",
                    "--authorization-mode=Node,RBAC",
                    f"--service-cluster-ip-range={_SERVICE_CIDR}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    f"--service-account-key-file={self._pki('sa.pub')}",
                    f"--service-account-signing-key-file={self._pki('sa.key')}",
                    "--allow-privileged=true",
                ],
                self._log("kube-apiserver"),
            )
        )
        procs.wait_until(self._api_ready, timeout=90, what="kube-apiserver /readyz", child=child)

    def _api_ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=self._pki("ca.crt"))
        return procs.http_ok(f"{self.api_url}/readyz", token=self.token, context=ctx)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "longtask-dev",
                    "cluster": {"server": self.api_url, "certificate-authority": self._pki("ca.crt")},
                }
            ],
            "users": [{"name": "longtask-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "longtask-dev",
                    "context": {"cluster": "longtask-dev", "user": "longtask-admin", "namespace": "default"},
                }
            ],
            "current-context": "longtask-dev",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start_controllers(self, tools: dict[str, Path]) -> None:
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        self.add(
            procs.Child(
                "kube-controller-manager",
                [
                    str(tools["kube-controller-manager"]),
                    *common,
                    f"--secure-port={procs.free_port()}",
                    f"--service-account-private-key-file={self._pki('sa.key')}",
                    f"--root-ca-file={self._pki('ca.crt')}",
                    "--use-service-account-credentials=false",
                    # Pods get tokens from the TokenRequest API (the node agent projects them),
                    # never from legacy token Secrets.
                    "--controllers=*,-serviceaccount-token-controller",
                    # The node agent renews its Lease; look at it every second so that the
                    # not-ready taint a new Node is born with goes within a second of Ready.
                    "--node-monitor-period=1s",
                ],
                self._log("kube-controller-manager"),
            )
        )
        self.add(
            procs.Child(
                "kube-scheduler",
                [
                    str(tools["kube-scheduler"]),
                    *common,
                    f"--secure-port={procs.free_port()}",
                ],
                self._log("kube-scheduler"),
            )
        )

    def _start_redis(self) -> None:
        if self.redis_ha is not None:
            self.redis_port = self.redis_ha.start()
            return
        self.redis_port = procs.free_port()
        child = self.add(
            redis_child(port=self.redis_port, data=self.state_dir / "redis", log=self._log("redis"))
        )
        wait_for_redis(port=self.redis_port, child=child)

    def _start_node_agent(self) -> None:
        """The local node (longtask_dev.node): registers the Node and runs the pods bound to it.

        Ready means: the Node is Ready without the not-ready taint, and the `default`
        namespace has its ServiceAccount (the ServiceAccount admission plugin refuses pods
        before that).
        """
        child = self.add(
            procs.Child(
                "node-agent",
                [
                    sys.executable,
                    "-m",
                    "longtask_dev.node",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--node-name={NODE_NAME}",
                    f"--state-dir={self.state_dir}",
                    f"--api-port={self.api_port}",
                    f"--workdir={binaries.REPO_ROOT}",
                ],
                self._log("node-agent"),
            )
        )
        procs.wait_until(self._node_ready, timeout=60, what="the node to be Ready", child=child, interval=0.2)

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        node = json.loads(out.stdout)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        tainted = any(t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints") or [])
        account = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
        return ready and not tainted and account.returncode == 0

    def pod_log(self, *, namespace: str, pod: str, container: str) -> Path:
        """Where the node agent writes a container's stdout and stderr (restarts append)."""
        return self.state_dir / "logs" / "pods" / f"{namespace}_{pod}_{container}.log"

    def kubectl_argv(self) -> list[str]:
        """kubectl, pointed at this cluster; append its arguments."""
        return [str(binaries.path("kubectl")), f"--kubeconfig={self.kubeconfig}"]

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; on failure raise with kubectl's stderr."""
        result = subprocess.run(
            [*self.kubectl_argv(), *args], input=input, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def redis_env(self) -> dict[str, str]:
        """REDIS_URL, and with redis_ha the Sentinel settings: what every component reads."""
        env = {"REDIS_URL": self.redis_url}
        if self.redis_ha is not None:
            env.update(LONGTASK_REDIS_SENTINELS=self.redis_ha.sentinels, LONGTASK_REDIS_MASTER=redisha.MASTER)
        return env

    def _write_env(self) -> None:
        self.env_file.write_text(f"KUBECONFIG={self.kubeconfig}\n")
        self.append_env(**self.redis_env())

    def append_env(self, **values: str) -> None:
        """Add shell-sourceable KEY=value lines to the env file (later commands extend it)."""
        with self.env_file.open("a") as env:
            for key, value in values.items():
                env.write(f"{key}={value}\n")

    def environ(self) -> dict[str, str]:
        """os.environ plus this cluster's KUBECONFIG and Redis settings (redis_env), for child
        processes."""
        # Without redis_ha, no Sentinels, whatever the calling shell has.
        redis = {"LONGTASK_REDIS_SENTINELS": "", **self.redis_env()}
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig), **redis)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
