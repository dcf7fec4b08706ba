"""The gateway's pacing of a batch's counts-only events for one watcher (batchpace.Pacer), pure.

Covers: the first counts-only event of a batch goes at once, later ones within the interval
are held and merged (latest counts and id, failed items of all of them) and go when the
interval is up; any other event (started, the terminal one, another task's) goes at once,
after what was held, so ids stay in order; a merge past FAILED_ITEMS_MAX sends the held event
and holds the new one; keep-alive ticks pass through; tasks without items are never held; a
slow client's interval starts when its previous write is done, so its backlog merges.
"""

from __future__ import annotations

from longtask_api import batchpace, fanout
from longtask_contracts import events


def _entry(
    seq: int, *, uid: str = "b", kind: events.Kind = events.Kind.PROGRESS, failed: int = 0, items: bool = True
) -> fanout.Entry:
    event = events.TaskEvent(
        kind=kind,
        namespace="ns",
        name=uid,
        uid=uid,
        items={"total": 100, "succeeded": seq, "seq": seq} if items else None,
        failed_items=[{"index": seq * 1000 + i, "error": {"type": "E"}} for i in range(failed)] or None,
    )
    return fanout.Entry(f"1-{seq}", event)


def _ids(out: list[fanout.Entry | None]) -> list[str | None]:
    return [e.id if e is not None else None for e in out]


def test_holds_and_merges_within_the_interval():
    pacer = batchpace.Pacer(interval=0.5)
    assert _ids(pacer.push(_entry(1), now=10.0)) == ["1-1"]
    assert pacer.push(_entry(2, failed=2), now=10.1) == []
    assert pacer.push(_entry(3, failed=1), now=10.2) == []
    assert pacer.due() == 10.5
    (out,) = pacer.flush(now=10.5)
    assert out is not None and out.id == "1-3" and out.event.items == {"total": 100, "succeeded": 3, "seq": 3}
    assert [f["index"] for f in out.event.failed_items or []] == [2000, 2001, 3000]
    assert pacer.due() is None
    assert pacer.push(_entry(4), now=10.7) == []  # 0.2 s after the flush
    assert _ids(pacer.push(_entry(5), now=11.1)) == []  # merged; the interval counts from the send
    assert _ids(pacer.flush(now=11.1)) == ["1-5"]
    assert _ids(pacer.push(_entry(6), now=11.7)) == ["1-6"]  # more than the interval later: at once


def test_other_events_go_at_once_after_what_is_held():
    pacer = batchpace.Pacer(interval=0.5)
    pacer.push(_entry(1), now=0.0)
    assert pacer.push(_entry(2), now=0.1) == []
    other = _entry(3, uid="other", kind=events.Kind.STARTED, items=False)
    assert _ids(pacer.push(other, now=0.2)) == ["1-2", "1-3"]
    assert pacer.push(_entry(4), now=0.3) == []
    assert _ids(pacer.push(_entry(5, uid="b2"), now=0.3)) == ["1-4", "1-5"]  # another batch: in order
    assert pacer.push(_entry(6), now=0.4) == []
    end = _entry(7, kind=events.Kind.SUCCEEDED)
    assert _ids(pacer.push(end, now=0.45)) == ["1-6", "1-7"]
    assert _ids(pacer.push(None, now=0.5)) == [None]


def test_a_task_without_items_is_never_held():
    pacer = batchpace.Pacer(interval=10)
    plain = [_entry(i, items=False) for i in range(5)]
    assert [_ids(pacer.push(e, now=1.0)) for e in plain] == [[e.id] for e in plain]


def test_too_many_failed_items_send_the_held_event():
    pacer = batchpace.Pacer(interval=0.5)
    pacer.push(_entry(1), now=0.0)
    assert pacer.push(_entry(2, failed=60), now=0.1) == []
    (out,) = pacer.push(_entry(3, failed=60), now=0.2)  # 120 > FAILED_ITEMS_MAX
    assert out is not None and out.id == "1-2" and len(out.event.failed_items or []) == 60
    assert pacer.held is not None and pacer.held.id == "1-3"
    assert pacer.due() == 0.7


def test_a_slow_client_starts_its_interval_when_the_write_is_done():
    pacer = batchpace.Pacer(interval=0.5)
    (first,) = pacer.push(_entry(1), now=0.0)
    pacer.sent(first, now=3.0)  # the client took 3 s to take it; meanwhile 2 and 3 queued up
    assert pacer.push(_entry(2, failed=1), now=3.0) == []
    assert pacer.push(_entry(3, failed=1), now=3.0) == []
    assert pacer.due() == 3.5
    (merged,) = pacer.flush(now=3.5)
    assert merged is not None and merged.id == "1-3" and len(merged.event.failed_items or []) == 2
