"""Finds the Go-built control-plane binaries, building them through hack/controlplane/build.sh.

It must not build anything itself: build.sh owns versions, caching and progress output.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build.sh"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BinaryError(RuntimeError):
    """A binary could not be found or built."""


@functools.cache
def bin_dir(tool: str) -> Path:
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir", tool],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def path(tool: str) -> Path:
    """The path of a cached tool binary (it may not exist yet)."""
    return bin_dir(tool) / tool


def ensure(*tools: str) -> dict[str, Path]:
    """Build whatever of `tools` is missing (progress goes to stderr) and return their paths."""
    missing = [t for t in tools if not os.access(path(t), os.X_OK)]
    if missing:
        result = subprocess.run(["bash", str(BUILD_SCRIPT), *missing], check=False)
        if result.returncode != 0:
            raise BinaryError(f"building {', '.join(missing)} failed (exit {result.returncode})")
    return {t: path(t) for t in tools}
