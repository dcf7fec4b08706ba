"""The layers stay apart: the import-linter contracts in .importlinter hold.

Covers: `lint-imports` keeps every contract (cli above the components and dev tools, above
runtime, above contracts; components independent of each other; contracts free of I/O
libraries; no product package importing the dev tools or the bench; Kubernetes clients
imported by the kube modules only; a worker free of Kubernetes and web frameworks), so
pytest fails on a broken layer as hack/test.sh does.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept():
    lint_imports = pathlib.Path(sys.executable).parent / "lint-imports"
    out = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / ".importlinter"), "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout
