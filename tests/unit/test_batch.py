"""The pure parts of batches: failedIndexes' compressed form, chunk sizes, counts, lane
records, the items' merged params, and how a batch's events fold into its status."""

from __future__ import annotations

import pytest

from longtask_contracts import batch, events, models
from longtask_operator import fold


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([], ""), ([4], "4"), ([1, 3, 4, 5, 9], "1,3-5,9"), ([0, 1], "0-1"), ([2, 4, 6], "2,4,6")],
)
def test_compress_is_kubernetes_form_and_expands_back(indexes, text):
    assert batch.compress(indexes) == text
    assert batch.expand(text) == indexes


def test_bounded_indexes_cuts_at_a_whole_index_and_says_so():
    text = batch.bounded_indexes(list(range(0, 40_000, 2)))
    assert len(text) < batch.FAILED_INDEXES_MAX_CHARS + 60
    assert text.endswith("(the full list: GET .../items?phase=Failed)")
    kept = text.split(",...")[0]
    assert batch.expand(kept) == list(range(0, 2 * len(kept.split(",")), 2))
    assert batch.bounded_indexes([1, 2], more=5).endswith("phase=Failed)")


def test_chunk_size_follows_item_duration():
    assert batch.chunk_size(None) == 1  # nothing known: one at a time
    assert batch.chunk_size(0.0) == batch.CHUNK_MAX
    assert batch.chunk_size(batch.CHUNK_SECONDS / 10) == 10
    assert batch.chunk_size(5.0) == 1


def test_counts_of_a_stopped_batch_count_its_waiting_items_as_cancelled():
    raw = {b"total": b"10", b"next": b"6", b"held": b"1", b"succeeded": b"3", b"failed": b"1", b"stop": b""}
    running = batch.counts(raw, retrying=1)
    assert (running.queued, running.running, running.cancelled, running.ended) == (5, 1, 0, 4)
    stopped = batch.counts({**raw, b"stop": b"Cancelled"}, retrying=1)
    assert (stopped.queued, stopped.cancelled) == (0, 5)
    assert stopped.text() == "9/10 (1 failed)"


def test_lane_round_trips():
    for lane in (
        batch.Lane(seq=0, state=batch.LaneState.QUEUED),
        batch.Lane(3, batch.LaneState.RUNNING, "p", "t", (4, 5)),
    ):
        assert batch.Lane.decode(lane.encode()) == lane


def test_item_keys_win_over_params():
    assert batch.merged_params({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"a": 1, "b": 3, "c": 4}


def test_a_spec_travels_without_its_items_and_keeps_its_lanes():
    spec = models.LongTaskSpec(task="demo.echo", items=[{"v": i} for i in range(5)], parallelism=8)
    assert spec.is_batch and spec.item_count == 5 and spec.lanes() == 5
    bare = spec.without_items()
    assert bare.items is None and bare.parallelism == 8
    assert models.LongTaskSpec.model_validate(bare.to_k8s()) == bare
    assert models.LongTaskSpec(task="x", parallelism=2).batch_field_errors()
    with pytest.raises(ValueError, match="items or itemsFrom"):
        models.LongTaskSpec(task="x", items=[{}], items_from={"upload": "abcdefgh", "count": 1})
    with pytest.raises(ValueError, match="bytes encoded as JSON"):
        models.LongTaskSpec(task="x", items=[{"a": "x" * models.ITEM_MAX_BYTES}])


def _event(kind: events.Kind, **fields) -> events.TaskEvent:
    return events.TaskEvent(kind=kind, namespace="ns", name="b", uid="u", attempt=1, **fields)


def test_a_batch_folds_its_counts_and_never_goes_back():
    status = fold.fold({}, _event(events.Kind.QUEUED, items={"total": 10, "queued": 10}))
    status = fold.fold(status, _event(events.Kind.STARTED, progress=0))
    later = {"total": 10, "queued": 4, "running": 2, "succeeded": 3, "failed": 1, "seq": 5}
    status = fold.fold(
        status,
        _event(events.Kind.PROGRESS, progress=40, items=later, failed_items=[{"index": 7, "error": {}}]),
    )
    assert status["items"]["succeeded"] == 3 and status["items"]["failedIndexes"] == "7"
    assert status["itemsText"] == "4/10 (1 failed)"
    older = {**later, "succeeded": 2, "seq": 4}
    assert fold.fold(status, _event(events.Kind.PROGRESS, progress=30, items=older)) is None  # out of order
    final = {**later, "queued": 0, "running": 0, "succeeded": 9, "seq": 9, "failedIndexes": "7"}
    status = fold.fold(
        status,
        _event(
            events.Kind.FAILED, progress=100, items=final, error={"type": "ItemsFailed", "message": "1 of 10"}
        ),
    )
    assert (
        status["phase"] == "Failed"
        and status["items"]["failedIndexes"] == "7"
        and status["itemsText"] == "10/10 (1 failed)"
    )
