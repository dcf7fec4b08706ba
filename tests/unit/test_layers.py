"""The layers stay apart: the operator and the gateway import no worker code.

Covers: importing every operator and gateway module loads nothing of longtask_worker (the
Celery settings they share live in longtask_contracts.celeryconfig).
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import pkgutil, importlib, sys
import longtask_operator, longtask_api
for pkg in (longtask_operator, longtask_api):
    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(mod.name)
print(sorted(m for m in sys.modules if m.startswith("longtask_worker")))
"""


def test_operator_and_gateway_import_no_worker_code():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
