"""Pages of a batch's items as the gateway lists them: each item's phase, from a snapshot of
the batch's Redis keys, and the opaque `continue` token; pure, no I/O here.

The reader (api/longtask_api/items.py) reads one snapshot per page (MULTI: the batch hash,
the lanes, and for the page's indexes their records and retry entries) and hands it here.
How a phase is derived (docs/batches.md): an index a lane holds is Running; one waiting in
the retry set is Retrying once it ran (else Queued); one at or past the batch's `next`
that never ran is Queued; a record that ended says Succeeded or Failed; once the batch
stopped (cancel, maxFailedItems) every item that was still waiting is Cancelled.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

from longtask_contracts import batch

PAGE_MAX = 1000  # entries per page at most
SCAN_MAX = 5000  # indexes one page looks at when a phase filter skips some (a page may be short)
_TOKEN_PREFIX = "i1:"


class BadToken(ValueError):
    """A `continue` that no page of this listing gave."""


def encode_token(index: int) -> str:
    """The `continue` of a page that stopped before `index`."""
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{index}".encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    """The index a `continue` resumes at (0 without one); BadToken for anything else."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadToken(token) from None
    number = text.removeprefix(_TOKEN_PREFIX)
    if not text.startswith(_TOKEN_PREFIX) or not number.isdigit():
        raise BadToken(token)
    return int(number)


def item_count(spec: dict[str, Any]) -> int | None:
    """How many items a LongTask's spec (the resource form) has; None: it is not a batch.

    Read from the object as it is, not through models.LongTaskSpec: kubectl may have made a
    batch the model refuses (an item over 16 KiB, which the CRD cannot measure), and its
    items are still listed."""
    if isinstance(items := spec.get("items"), list):
        return len(items)
    source = spec.get("itemsFrom")
    if isinstance(source, dict) and isinstance(count := source.get("count"), int):
        return count
    return None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one read saw of a batch: its hash (None: not started yet), the indexes its lanes
    hold, and for the indexes the page looks at: which have a record (ran, or were held),
    which failed for good, and when those waiting to retry are due."""

    total: int
    raw: dict[str, str] | None
    held: frozenset[int]
    recorded: frozenset[int]
    failed: frozenset[int]
    retry_due: dict[int, float]
    # The task ended without its batch ever starting (cancelled first): its items never ran.
    never_ran: bool = False

    @property
    def next(self) -> int:
        return int((self.raw or {}).get(batch.Key.NEXT) or 0)

    @property
    def stopped(self) -> bool:
        return bool((self.raw or {}).get(batch.Key.STOP)) or self.never_ran


def held_indexes(lanes: dict[str, str]) -> frozenset[int]:
    """Every index some lane holds (an HGETALL of names.lanes)."""
    return frozenset(i for raw in lanes.values() for i in batch.Lane.decode(raw).held)


def phase_of(index: int, snap: Snapshot) -> batch.ItemPhase:
    """Item `index`'s phase in the snapshot (the module's docstring says how)."""
    waiting = batch.ItemPhase.CANCELLED if snap.stopped else batch.ItemPhase.QUEUED
    if index in snap.held:
        return batch.ItemPhase.RUNNING
    if index in snap.retry_due:
        ran = index in snap.recorded and not snap.stopped
        return batch.ItemPhase.RETRYING if ran else waiting
    if index in snap.failed:
        return batch.ItemPhase.FAILED
    if index >= snap.next or index not in snap.recorded:
        return waiting
    # Taken, not held, not waiting, not failed, with a record: it succeeded. (A lost lane's
    # item the operator is returning right now also looks so for that instant.)
    return batch.ItemPhase.SUCCEEDED


def entry(*, index: int, phase: batch.ItemPhase, record: str | None, due: float | None) -> dict[str, Any]:
    """Item `index`'s entry (batch.ItemRecord.to_api) from its phase, record and retry due time."""
    item = batch.ItemRecord.model_validate_json(record) if record else batch.ItemRecord(index=index)
    item.index, item.phase = index, phase
    item.next_attempt_at = due if phase is batch.ItemPhase.RETRYING and due else None
    return item.to_api()


def select(
    snap: Snapshot, *, indexes: list[int], phase: batch.ItemPhase | None, limit: int, end: int
) -> tuple[list[tuple[int, batch.ItemPhase]], int | None]:
    """Of `indexes` (ascending: those this read looked at), the first `limit` in `phase`
    (None: any) with their phases, and where the next page starts (None: this is the last);
    `end` is the index after the last one looked at."""
    out: list[tuple[int, batch.ItemPhase]] = []
    for index in indexes:
        found = phase_of(index, snap)
        if phase is not None and found is not phase:
            continue
        if len(out) == limit:
            return out, index
        out.append((index, found))
    return out, (end if end < snap.total else None)
