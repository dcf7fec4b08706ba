"""The task SDK and runner alone, with an in-memory store at the Redis edge.

Covers: registration and clear errors for unknown names and bad params; the events of
a successful, failing and cancelled run; a second delivery of a claimed attempt does
nothing; file paths from params stay inside the worker's files root (`..`, absolute
paths and symlinks that leave it are refused, and no root means no file access).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest

from longtask_contracts import events, ledger, models
from longtask_worker import runner, sdk
from longtask_worker.tasks import demo, docs  # noqa: F401 - registers the demo and docs tasks
from tests import fakes


def run(
    store: fakes.MemoryStore,
    task: str,
    *,
    attempt: int = 1,
    max_retries: int = 3,
    limits: runner.Limits | None = None,
    **params,
) -> events.Kind | None:
    spec = models.LongTaskSpec(task=task, params=params, retry=models.RetryPolicy(max_retries=max_retries))
    dispatch = ledger.Dispatch(
        namespace="ns", name="t", uid="u1", spec=spec, attempt=attempt, deadline=time.time() + 3600
    )
    return runner.run(dispatch=dispatch, store=store, worker="w", limits=limits or runner.Limits())  # type: ignore[arg-type]


def test_success_reports_progress_and_result():
    store = fakes.MemoryStore()
    assert run(store, "demo.sleep", seconds=0, steps=4) is events.Kind.SUCCEEDED
    kinds = [e.kind for e in store.events]
    assert kinds == [events.Kind.STARTED] + [events.Kind.PROGRESS] * 4 + [events.Kind.SUCCEEDED]
    assert store.events[-1].result == {"slept": store.events[-1].result["slept"], "steps": 4}
    assert store.claims == {}, "the lease is released"


def test_unknown_task_and_bad_params_fail_clearly():
    store = fakes.MemoryStore()
    assert run(store, "demo.nope") is events.Kind.FAILED
    error = store.events[-1].error
    assert error is not None and error["type"] == "UnknownTask" and "demo.sleep" in error["message"]
    store = fakes.MemoryStore()
    assert run(store, "demo.sleep", sconds=1) is events.Kind.FAILED
    assert store.events[-1].error == {"type": "InvalidParams", "message": store.events[-1].error["message"]}
    assert "sconds" in store.events[-1].error["message"]


def test_cancelled_before_start_never_runs_the_body():
    store = fakes.MemoryStore()
    store.cancelled.add("u1")
    assert run(store, "demo.sleep", seconds=100) is events.Kind.CANCELLED


def test_redelivery_of_a_finished_attempt_does_nothing():
    store = fakes.MemoryStore()
    run(store, "demo.noop")
    before = len(store.events)
    assert run(store, "demo.noop") is None
    assert len(store.events) == before


def test_retryable_error_schedules_the_next_attempt_with_backoff():
    store = fakes.MemoryStore()
    before = time.time()
    assert run(store, "demo.fail", permanent=False) is events.Kind.RETRYING
    ((following, at),) = store.retries
    assert following.attempt == 2 and before + 1.8 <= at <= time.time() + 2.2  # 2 s ± 10 %
    assert store.events[-1].error == {"type": "RetryableError", "message": "demo failure"}


def test_permanent_error_fails_at_once_and_exhausted_retries_dead_letter():
    store = fakes.MemoryStore()
    assert run(store, "demo.fail", permanent=True) is events.Kind.FAILED
    assert store.retries == [] and store.dead == [] and not store.events[-1].dead_lettered
    store = fakes.MemoryStore()
    assert run(store, "demo.fail", attempt=4, max_retries=3) is events.Kind.FAILED
    assert store.events[-1].dead_lettered is True
    assert store.dead[0].reason == "RetriesExhausted" and store.dead[0].attempts == 4


def test_registering_a_name_twice_is_an_error():
    @sdk.task("test.once")
    def first(ctx: sdk.TaskContext) -> None: ...

    with pytest.raises(ValueError, match="registered twice"):

        @sdk.task("test.once")
        def second(ctx: sdk.TaskContext) -> None: ...


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("docs", True),
        ("docs/../docs/a.txt", True),
        ("../etc/passwd", False),
        ("/etc/passwd", False),
        ("docs/../../x", False),
        ("link-out", False),  # a symlink pointing outside the root
    ],
)
def test_confine(tmp_path, path, ok):
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "link-out").symlink_to(tmp_path)
    if ok:
        assert sdk.confine(path, str(root)).is_relative_to(root)
    else:
        with pytest.raises(sdk.PermanentError, match="outside the worker's files root"):
            sdk.confine(path, str(root))


def test_absolute_path_inside_the_root_is_allowed(tmp_path):
    assert sdk.confine(str(tmp_path / "a.txt"), str(tmp_path)) == tmp_path / "a.txt"


def test_no_root_no_file_access():
    with pytest.raises(sdk.PermanentError, match="LONGTASK_FILES_ROOT"):
        sdk.confine("a.txt", "")


def test_docs_embed_reads_and_writes_only_under_the_root(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one two three four five six")
    limits = runner.Limits(files_root=str(tmp_path))
    store = fakes.MemoryStore()
    assert run(
        store, "docs.embed", limits=limits, directory="in", output="out.jsonl", chunk_words=3, overlap=0
    ) is (events.Kind.SUCCEEDED)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    store = fakes.MemoryStore()
    assert run(store, "docs.embed", limits=limits, directory="/etc") is events.Kind.FAILED
    error = store.events[-1].error
    assert error is not None and error["type"] == "PermanentError" and "outside" in error["message"]


def _root_with_a_link_out(tmp_path):
    """A files root whose docs/ holds a real file and a link to a file outside the root."""
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha beta")
    (tmp_path / "secret.txt").write_text("top secret words")
    (root / "docs" / "s.txt").symlink_to(tmp_path / "secret.txt")
    return root


def test_a_link_out_of_the_root_is_never_read(tmp_path):
    root = _root_with_a_link_out(tmp_path)
    with pytest.raises(sdk.PermanentError, match="outside the worker's files root"):
        sdk.open_beneath("docs/s.txt", str(root))
    store = fakes.MemoryStore()
    limits = runner.Limits(files_root=str(root))
    assert run(store, "docs.embed", limits=limits, directory="docs") is events.Kind.FAILED
    error = store.events[-1].error
    assert error is not None and error["type"] == "PermanentError" and "s.txt" in error["message"]


def test_a_link_inside_the_root_is_read(tmp_path):
    (tmp_path / "a.txt").write_text("inside")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    with sdk.open_beneath("b.txt", str(tmp_path)) as f:
        assert f.read() == "inside"


@pytest.mark.parametrize("path", ["docs\0/a.txt", "a\0.jsonl"])
def test_a_path_with_a_nul_fails_permanently(tmp_path, path):
    (tmp_path / "docs").mkdir()
    store = fakes.MemoryStore()
    limits = runner.Limits(files_root=str(tmp_path))
    kind = run(store, "docs.embed", limits=limits, documents=[{"name": "d", "text": "x y"}], output=path)
    assert kind is events.Kind.FAILED
    error = store.events[-1].error
    assert error is not None and error["type"] == "PermanentError" and "NUL" in error["message"]


def test_the_output_is_never_written_through_a_link(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.jsonl"
    outside.write_text("keep me\n")
    (root / "out.jsonl").symlink_to(outside)  # a link to a file outside
    with pytest.raises(sdk.PermanentError, match="outside"):
        sdk.open_beneath("out.jsonl", str(root), "w")
    (root / "gone").symlink_to(tmp_path)  # a link to a directory outside
    with pytest.raises(sdk.PermanentError, match="outside"):
        sdk.open_beneath("gone/outside.jsonl", str(root), "w")
    assert outside.read_text() == "keep me\n"


def test_a_directory_swapped_for_a_link_while_opening_is_never_followed(tmp_path):
    """The check-then-open race: while a thread keeps swapping out/ between a directory and a
    link out of the root, no opening for writing ever creates a file outside."""
    root = tmp_path / "root"
    root.mkdir()
    escape = tmp_path / "escape"
    escape.mkdir()
    (root / "link").symlink_to(escape)
    (root / "dir").mkdir()
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for source in (root / "dir", root / "link"):
                with contextlib.suppress(OSError):
                    os.rename(source, root / "out")  # atomically becomes out/...
                    os.rename(root / "out", source)  # ...and goes back

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(3000):
            with (
                contextlib.suppress(sdk.PermanentError),
                sdk.open_beneath("out/r.jsonl", str(root), "w") as f,
            ):
                f.write("x")
    finally:
        stop.set()
        swapper.join()
    assert list(escape.iterdir()) == []


def test_only_regular_files_are_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(sdk.PermanentError, match="not a regular file"):
        sdk.open_beneath("pipe.txt", str(tmp_path))


def test_docs_embed_one_document_per_call_gives_its_own_result(tmp_path):
    """A batch item's form: `text` (with a name) or `path` under the root; the result is
    that document's, and a missing or empty document fails that call alone."""
    (tmp_path / "a.txt").write_text("one two three four five six seven")
    limits = runner.Limits(files_root=str(tmp_path))
    store = fakes.MemoryStore()
    kind = run(store, "docs.embed", limits=limits, path="a.txt", chunk_words=3, overlap=0, dims=8)
    assert kind is events.Kind.SUCCEEDED
    assert store.events[-1].result == {"name": "a.txt", "words": 7, "chunks": 3, "dims": 8, "output": None}
    store = fakes.MemoryStore()
    assert run(store, "docs.embed", text="alpha beta", name="b.txt", chunk_words=8) is events.Kind.SUCCEEDED
    assert store.events[-1].result == {"name": "b.txt", "words": 2, "chunks": 1, "dims": 256, "output": None}
    for bad in (
        {"path": "missing.txt"},
        {"text": "   "},
        {"text": "x", "path": "a.txt"},
        {"text": "x", "directory": "."},
    ):
        store = fakes.MemoryStore()
        assert run(store, "docs.embed", limits=limits, **bad) is events.Kind.FAILED, bad
        error = store.events[-1].error
        assert error is not None and error["type"] == "PermanentError", (bad, error)
