"""A real Prometheus server (Debian's /usr/bin/prometheus) for tests, on a free loopback port.

It scrapes the given targets every second and evaluates the given rule files every
second, with a generated config and its own data folder; nothing is shared with any
other Prometheus on the machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from longtask_dev import procs

BINARY = "/usr/bin/prometheus"


def available() -> bool:
    return shutil.which(BINARY) is not None


class Prometheus:
    def __init__(self, *, workdir: Path, jobs: dict[str, list[str]], rule_files: list[Path]) -> None:
        """`jobs`: job name -> metrics URLs (http://host:port/path)."""
        self.workdir = workdir
        self.jobs = jobs
        self.rule_files = rule_files
        self.port = procs.free_port()
        self.child: procs.Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        scrape_configs = []
        for job, urls in self.jobs.items():
            parts = [urlsplit(url) for url in urls]
            scrape_configs.append(
                {
                    "job_name": job,
                    "metrics_path": parts[0].path or "/metrics",
                    "static_configs": [{"targets": [p.netloc for p in parts]}],
                }
            )
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": scrape_configs,
        }

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        self.child = procs.Child(
            "prometheus",
            [
                BINARY,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            self.workdir / "prometheus.log",
        ).start()
        procs.wait_until(
            lambda: procs.http_ok(f"{self.url}/-/ready"),
            timeout=60,
            what="Prometheus to be ready",
            child=self.child,
        )
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Pending and firing alerts named `name`, from Prometheus' own /api/v1/alerts."""
        return [a for a in self.get("/api/v1/alerts")["alerts"] if a["labels"].get("alertname") == name]

    def targets_up(self) -> bool:
        active = self.get("/api/v1/targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)
