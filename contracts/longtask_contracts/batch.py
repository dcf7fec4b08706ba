"""A batch's data: its items' records, its counters, its lanes, and the forms they take; pure.

A LongTask with spec.items (or spec.itemsFrom) is a batch: each item runs spec.task once
with spec.params merged with the item, with its own attempts, retries, deadline and result.
Items are run by lanes: a lane is a Celery message (names.RUN_ITEMS) that a worker claims
and that then takes items from the batch a chunk at a time, runs them one after another and
reports each chunk's outcomes in one write (batchledger.py has the scripts). A batch has at
most spec.parallelism lanes, so at most that many items run at once. docs/batches.md is the
user's view. It must not do I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# A lane's lease: renewed by its worker every third of it, its expiry seen by the operator.
CHUNK_SECONDS = 0.1  # a lane takes as many items as it ran in about this long (at least 1)
CHUNK_MAX = 256  # and never more at once
SLICE_SECONDS = 2.0  # a lane that ran this long goes to the back of the queue (other batches)
REPORT_EVERY_SECONDS = 0.5  # at most one counts-only event per batch this often (names.items_beat)
EVENT_FAILURES_MAX = 20  # failed items named in one event (the rest: GET .../items?phase=Failed)
FAILED_INDEXES_MAX_CHARS = 4096  # status.items.failedIndexes is cut to this, saying so


class ItemPhase(enum.StrEnum):
    QUEUED = "Queued"  # not started yet (or back in the queue after its lane was lost)
    RUNNING = "Running"  # held by a lane: running, or next in its chunk
    RETRYING = "Retrying"  # an attempt failed; another is due at nextAttemptAt
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"  # never ran to its end: the batch was cancelled or stopped


ENDED = frozenset({ItemPhase.SUCCEEDED, ItemPhase.FAILED, ItemPhase.CANCELLED})


class ItemRecord(BaseModel):
    """What is known of one item (names.items_records; an item without one is Queued)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    index: int
    phase: ItemPhase = ItemPhase.QUEUED
    attempts: int = 0
    crashes: int = Field(default=0, description="Attempts in a row whose worker died.")
    result: Any = None
    error: dict[str, str] | None = None
    started_at: float | None = Field(default=None, description="Unix time its first attempt started.")
    finished_at: float | None = None
    next_attempt_at: float | None = None

    def encode(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True)

    def to_api(self) -> dict[str, Any]:
        """The gateway's and the CLI's form: camelCase, times as RFC 3339."""
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"crashes"})
        for key in ("startedAt", "finishedAt", "nextAttemptAt"):
            if key in body:
                body[key] = iso(body[key])
        return body

    def deadline(self, timeout_seconds: int, now: float) -> float:
        """When the item must have ended: timeoutSeconds after its first attempt started."""
        return (self.started_at or now) + timeout_seconds


class Counts(BaseModel):
    """A batch's counters: every item is in exactly one of queued, running, succeeded,
    failed and cancelled (retrying items count as queued)."""

    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    seq: int = Field(default=0, description="Reports written so far: a later count has a higher seq.")

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    def progress(self) -> float:
        """The share of ended items, in percent."""
        return round(100.0 * self.ended / self.total, 2) if self.total else 0.0

    def text(self) -> str:
        """The Items printer column: "812/10000", with failures if any."""
        failed = f" ({self.failed} failed)" if self.failed else ""
        return f"{self.ended}/{self.total}{failed}"


# The fields of names.batch(uid).
class Key(enum.StrEnum):
    TOTAL = "total"
    PARALLELISM = "parallelism"
    MAX_FAILED = "maxfailed"  # -1: no limit
    POOL = "pool"
    NEXT = "next"  # items 0..next-1 were taken at least once (fresh items come from here)
    HELD = "held"  # items held by lanes
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LANES = "lanes"  # lanes running (claimed, not parked)
    SEQ = "seq"  # reports written
    STOP = "stop"  # "" or the phase the batch ends in early: Cancelled, Failed
    ENDED = "ended"  # "" or the phase it ended in
    STARTED = "started"  # "1" once a lane first ran


def counts(raw: dict[Any, Any], retrying: int) -> Counts:
    """Counts from an HGETALL of names.batch(uid) and the ZCARD of its retries."""
    get = {_text(k): _text(v) for k, v in raw.items()}
    number = {k: int(v) for k, v in get.items() if v.lstrip("-").isdigit()}
    return counts_of(
        total=number.get(Key.TOTAL, 0),
        taken=number.get(Key.NEXT, 0),
        held=number.get(Key.HELD, 0),
        succeeded=number.get(Key.SUCCEEDED, 0),
        failed=number.get(Key.FAILED, 0),
        retrying=retrying,
        seq=number.get(Key.SEQ, 0),
        stopped=bool(get.get(Key.STOP)),
    )


def counts_of(
    *, total: int, taken: int, held: int, succeeded: int, failed: int, retrying: int, seq: int, stopped: bool
) -> Counts:
    """Counts from a batch's counters (`taken`: its `next`). The items a stopped batch will
    not run (stop set: cancelled, or too many failures) count as cancelled; a replay runs
    them again."""
    waiting = max(0, total - taken) + retrying
    return Counts(
        total=total,
        queued=0 if stopped else waiting,
        running=held,
        succeeded=succeeded,
        failed=failed,
        cancelled=waiting if stopped else 0,
        seq=seq,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LaneState(enum.StrEnum):
    QUEUED = "q"  # its token is (or is about to be) in the queue
    RUNNING = "r"  # a worker claimed it
    IDLE = "i"  # nothing to take for now: no token; the operator wakes it
    LOST = "x"  # its lease ran out: the operator is ending its items


@dataclasses.dataclass(frozen=True)
class Lane:
    """names.lanes(uid)[lane]: "seq state pod tag idx,idx,..." (pod and tag "-" when none)."""

    seq: int
    state: LaneState
    pod: str = "-"
    tag: str = "-"
    held: tuple[int, ...] = ()

    def encode(self) -> str:
        return f"{self.seq} {self.state.value} {self.pod} {self.tag} {','.join(map(str, self.held))}".rstrip()

    @classmethod
    def decode(cls, raw: str | bytes) -> Lane:
        parts = (raw.decode() if isinstance(raw, bytes) else raw).split(" ")
        held = tuple(int(i) for i in parts[4].split(",") if i) if len(parts) > 4 else ()
        return cls(
            seq=int(parts[0]),
            state=LaneState(parts[1]),
            pod=parts[2] if len(parts) > 2 else "-",
            tag=parts[3] if len(parts) > 3 else "-",
            held=held,
        )


def merged_params(params: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """An item's keyword arguments: the task's params, then the item's keys (which win)."""
    return {**params, **item}


def chunk_size(seconds_per_item: float | None) -> int:
    """How many items a lane takes next, from how long its items took so far."""
    if seconds_per_item is None:
        return 1
    if seconds_per_item <= 0:
        return CHUNK_MAX
    return max(1, min(CHUNK_MAX, int(CHUNK_SECONDS / seconds_per_item)))


def compress(indexes: Iterable[int]) -> str:
    """Kubernetes' compressed form of sorted indexes: [1, 3, 4, 5, 9] -> "1,3-5,9"."""
    runs: list[str] = []
    start = prev = None
    for i in indexes:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    if start is not None:
        runs.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(runs)


def expand(text: str) -> list[int]:
    """The indexes of a compressed form ("1,3-5" -> [1, 3, 4, 5])."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def bounded_indexes(indexes: list[int], more: int = 0) -> str:
    """compress(indexes), cut to FAILED_INDEXES_MAX_CHARS; `more`: indexes not read at all."""
    text = compress(indexes)
    if len(text) <= FAILED_INDEXES_MAX_CHARS and not more:
        return text
    cut = text[:FAILED_INDEXES_MAX_CHARS].rsplit(",", 1)[0]
    return f"{cut},... (the full list: GET .../items?phase=Failed)"


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
