"""A `kubectl get --watch` of one object in a thread, each change stamped with its arrival.

For tests and benchmarks that need to know when something changed (a scale patch, a
status write) without polling the apiserver. It only reads.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from longtask_dev import cluster as cluster_mod


class Watch:
    def __init__(self, c: cluster_mod.Cluster, namespace: str, resource: str) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []  # (unix time, object), in order
        self._proc = subprocess.Popen(
            [*c.kubectl_argv(), "get", "-n", namespace, resource, "--watch", "-o", "json"],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.strip())
            except ValueError:
                continue  # an object spans several lines
            self.seen.append((time.time(), obj))
            buffer = buffer.strip()[end:]

    def first(self, predicate: Callable[[dict[str, Any]], bool], *, since: float = 0.0) -> float | None:
        """When the first change at or after `since` matching `predicate` arrived, if any."""
        return next((at for at, obj in list(self.seen) if at >= since and predicate(obj)), None)

    def latest(self) -> dict[str, Any] | None:
        return self.seen[-1][1] if self.seen else None

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replicas(obj: dict[str, Any] | None) -> int:
    """A Deployment's (or Scale's) spec.replicas; 0 for none."""
    return int(((obj or {}).get("spec") or {}).get("replicas") or 0)
