"""The whole longtask platform as local processes on top of the embedded Cluster.

CRDs, operator, worker(s) and gateway, each a real process started the way a user would
start it (`longtask operator`, `longtask worker`, `longtask api`). It must not reach into
the components' internals: it only starts, stops and waits for them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from longtask_dev import binaries, cluster, procs

CRD_DIR = binaries.REPO_ROOT / "charts" / "longtask" / "files" / "crds"


def longtask_argv(*args: str) -> list[str]:
    """The `longtask` CLI as a child process of this interpreter."""
    return [sys.executable, "-m", "longtask_cli", *args]


class Platform:
    """A Cluster plus CRDs, operator, workers and gateway. Use start() / stop()."""

    def __init__(self, c: cluster.Cluster, *, api_port: int = 0) -> None:
        self.cluster = c
        self.api_port = api_port or procs.free_port()
        self.operator_metrics_port = procs.free_port()
        self._workers = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, *, workers: int = 1) -> Platform:
        self.apply_crds()
        self.start_operator()
        for _ in range(workers):
            self.start_worker()
        self.start_api()
        self.cluster.append_env(
            LONGTASK_API=self.api_url,
            LONGTASK_METRICS_OPERATOR=f"http://127.0.0.1:{self.operator_metrics_port}/metrics",
            LONGTASK_METRICS_API=f"{self.api_url}/metrics",
        )
        return self

    def apply_crds(self) -> None:
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def _log(self, name: str) -> Path:
        return self.cluster.state_dir / "logs" / f"{name}.log"

    def start_operator(self, *, extra_env: dict[str, str] | None = None) -> procs.Child:
        env = dict(
            self.cluster.environ(), LONGTASK_METRICS_PORT=str(self.operator_metrics_port), **(extra_env or {})
        )
        child = self.cluster.add(
            procs.Child("operator", longtask_argv("operator"), self._log("operator"), env=env)
        )
        procs.wait_until(
            lambda: procs.http_ok(f"http://127.0.0.1:{self.operator_metrics_port}/metrics"),
            timeout=60,
            what="the operator's metrics endpoint",
            child=child,
        )
        return child

    def kill_operator(self) -> None:
        """SIGKILL the operator, as a crash or an evicted pod would end it."""
        child = self.cluster.child("operator")
        child.kill()
        self.cluster.children.remove(child)

    def stop_child(self, child: procs.Child) -> None:
        child.stop()
        self.cluster.children.remove(child)

    def start_worker(
        self, *, pool: str = "default", concurrency: int = 2, extra_env: dict[str, str] | None = None
    ) -> procs.Child:
        self._workers += 1
        name = f"worker-{pool}-{self._workers}"
        env = dict(self.cluster.environ(), **(extra_env or {}))
        child = self.cluster.add(
            procs.Child(
                name,
                longtask_argv(
                    "worker",
                    "--pool",
                    pool,
                    "--concurrency",
                    str(concurrency),
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

    def start_api(self) -> procs.Child:
        child = self.cluster.add(
            procs.Child(
                "api",
                longtask_argv("api", "--port", str(self.api_port)),
                self._log("api"),
                env=self.cluster.environ(),
            )
        )
        procs.wait_until(
            lambda: procs.http_ok(f"{self.api_url}/healthz"),
            timeout=60,
            what="the gateway's /healthz",
            child=child,
        )
        return child
