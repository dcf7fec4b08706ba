"""The chart README's local recipe ("Try it on your machine"), run as written.

Covers: the README's two marked shell blocks (`<!-- recipe: cluster -->` and
`<!-- recipe: install -->` in charts/longtask/README.md) run with bash from the repository
root, with only the state folder and the ports replaced (a temporary folder, free
ports): `uv run longtask dev cluster` starts a cluster with no CRDs and prints `ready
in`; the install block's own commands succeed, in order: `helm install --wait` with the
default pool autoscaled creates the CRDs and the WorkerPool, `kubectl wait` sees the
LongTask reach Succeeded on the chart's own worker pod, `helm test` passes. Then the
pool's WorkerPool exists, and Ctrl-C stops the cluster.

Nothing else of the recipe is assumed: change a command in the README and this test runs
the new one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from longtask_dev import binaries, procs
from tests import helpers

pytestmark = pytest.mark.cluster

README = binaries.REPO_ROOT / "charts" / "longtask" / "README.md"
STATE_DIR = ".longtask/chart"  # the recipe's --state-dir, replaced by a temporary folder
PORTS = ("18080", "19090", "18081")  # the recipe's fixed ports, replaced by free ones
_BLOCK = re.compile(r"<!-- recipe: (\w+) -->\n```bash\n(.*?)```", re.DOTALL)


def recipe() -> dict[str, str]:
    """The README's marked shell blocks by name, exactly as a reader would copy them."""
    return {match[1]: match[2] for match in _BLOCK.finditer(README.read_text())}


def substituted(text: str, *, state_dir: Path, ports: dict[str, int]) -> str:
    """`text` with the state folder and the ports replaced (nothing else)."""
    assert STATE_DIR in text
    text = text.replace(STATE_DIR, str(state_dir))
    for fixed, free in ports.items():
        text = re.sub(rf"\b{fixed}\b", str(free), text)
    return text


def test_the_recipe_blocks_are_found():
    blocks = recipe()
    assert set(blocks) == {"cluster", "install"}
    assert "longtask dev cluster" in blocks["cluster"]
    assert "helm install" in blocks["install"]
    assert all(re.search(rf"\b{port}\b", blocks["install"]) for port in PORTS), "ports to replace"
    assert all(STATE_DIR in block for block in blocks.values())


def _interrupt(proc: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as in a terminal: SIGINT to the block's whole process group."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def dev_cluster(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """The recipe's first block, running in the background until the test ends."""
    state_dir, ports = tmp_path / "state", {fixed: procs.free_port() for fixed in PORTS}
    output = tmp_path / "dev-cluster.out"
    block = substituted(recipe()["cluster"], state_dir=state_dir, ports=ports)
    with output.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", block],
            cwd=binaries.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, UV_FROZEN="1"),
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            text = output.read_text()
            assert proc.poll() is None, f"exited {proc.returncode} before ready:\n{text}"
            return re.search(r"^ready in \d+\.\d s$", text, re.MULTILINE) is not None

        helpers.poll(ready, timeout=180, what="`longtask dev cluster` to print `ready in`", interval=0.5)
        yield state_dir, ports
    finally:
        assert _interrupt(proc) == 0, output.read_text()


def test_the_readme_recipe_installs_the_chart_and_runs_a_task(
    dev_cluster: tuple[Path, dict[str, int]], tmp_path: Path
):
    state_dir, ports = dev_cluster
    block = substituted(recipe()["install"], state_dir=state_dir, ports=ports)
    helm_home = tmp_path / "helm-home"  # Helm's own folders, never the user's
    env = dict(
        os.environ,
        HELM_CONFIG_HOME=str(helm_home / "config"),
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_DATA_HOME=str(helm_home / "data"),
    )
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=binaries.REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        for log in sorted((state_dir / "logs" / "pods").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
    assert result.returncode == 0, f"{result.stderr}\n{result.stdout}"
    assert "condition met" in result.stdout, "kubectl wait saw the LongTask Succeeded"
    assert re.search(r"Phase:\s+Succeeded", result.stdout), "helm test passed"
    assert "workerpool.longtask.io/longtask-worker-default" in result.stdout, "autoscaled by default"
