"""A worker serves only the task modules it is given, and file paths stay in its root.

Covers: a worker started without task modules fails `demo.crash` and `docs.embed` as
UnknownTask (the built-ins are opt-in); a worker that serves docs.embed refuses a
directory outside its LONGTASK_FILES_ROOT with a clear error, and reads one inside it.
"""

from __future__ import annotations

import pytest

from tests import lt, pools

pytestmark = pytest.mark.cluster


def test_a_worker_without_modules_serves_no_builtin(platform, kubectl, namespace):
    pool = pools.unique_pool()
    worker = platform.start_worker(pool=pool, tasks="")
    try:
        for name, task in (("crash", "demo.crash"), ("embed", "docs.embed")):
            lt.create(kubectl, namespace, name, task=task, pool=pool)
            status = lt.wait_phase(kubectl, namespace, name, "Failed")
            assert status["error"]["type"] == "UnknownTask"
            assert f"no task named '{task}'" in status["error"]["message"]
        assert worker.alive(), "demo.crash never ran"
    finally:
        platform.stop_child(worker)


def test_file_paths_are_confined_to_the_files_root(platform, kubectl, namespace, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha beta gamma delta")
    pool = pools.unique_pool()
    worker = platform.start_worker(
        pool=pool, tasks="longtask_worker.tasks.docs", extra_env={"LONGTASK_FILES_ROOT": str(tmp_path)}
    )
    try:
        lt.create(kubectl, namespace, "outside", task="docs.embed", pool=pool, params={"directory": "/etc"})
        lt.create(
            kubectl, namespace, "dotdot", task="docs.embed", pool=pool, params={"directory": "docs/../.."}
        )
        lt.create(kubectl, namespace, "inside", task="docs.embed", pool=pool, params={"directory": "docs"})
        for name in ("outside", "dotdot"):
            status = lt.wait_phase(kubectl, namespace, name, "Failed")
            assert status["error"]["type"] == "PermanentError"
            assert "outside the worker's files root" in status["error"]["message"]
            assert status["attempts"] == 1, "a refused path is not retried"
        assert lt.wait_phase(kubectl, namespace, "inside", "Succeeded")["result"]["documents"] == 1
    finally:
        platform.stop_child(worker)


def test_links_out_of_the_root_and_nul_paths_fail_at_once(platform, kubectl, namespace, tmp_path):
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha beta gamma delta")
    (tmp_path / "secret.txt").write_text("top secret words")
    (root / "linked").mkdir()
    (root / "linked" / "s.txt").symlink_to(tmp_path / "secret.txt")
    pool = pools.unique_pool()
    worker = platform.start_worker(
        pool=pool, tasks="longtask_worker.tasks.docs", extra_env={"LONGTASK_FILES_ROOT": str(root)}
    )
    retry = {"maxRetries": 2, "backoffSeconds": 1}
    try:
        lt.create(kubectl, namespace, "link", task="docs.embed", pool=pool, params={"directory": "linked"})
        lt.create(
            kubectl,
            namespace,
            "nul",
            task="docs.embed",
            pool=pool,
            retry=retry,
            params={"directory": "docs", "output": "out\u0000.jsonl"},
        )
        for name, says in (("link", "outside the worker's files root"), ("nul", "NUL byte")):
            status = lt.wait_phase(kubectl, namespace, name, "Failed")
            assert status["error"]["type"] == "PermanentError", status
            assert says in status["error"]["message"]
            assert status["attempts"] == 1, "a bad path is not retried"
    finally:
        platform.stop_child(worker)
