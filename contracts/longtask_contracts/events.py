"""The event format shared by workers, the operator and the gateway; pure data, no I/O.

A task's events go to its own Redis Stream (read by SSE clients; the stream id is the
SSE event id) and to the shared status stream (read by the operator, which mirrors them
into the LongTask status). Each stream entry has one field, `event`, holding JSON.
"""

from __future__ import annotations

import enum
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from longtask_contracts import phases

FIELD = "event"


class Kind(enum.StrEnum):
    QUEUED = "queued"  # the operator sent the attempt to its queue
    STARTED = "started"  # a worker began an attempt
    PROGRESS = "progress"  # the task reported progress
    RETRYING = "retrying"  # an attempt failed; another will follow
    SUCCEEDED = "succeeded"  # finished with a result
    FAILED = "failed"  # finished with an error
    CANCELLED = "cancelled"  # stopped on request


PHASE_OF: dict[Kind, phases.Phase] = {
    Kind.QUEUED: phases.Phase.QUEUED,
    Kind.STARTED: phases.Phase.RUNNING,
    Kind.PROGRESS: phases.Phase.RUNNING,
    Kind.RETRYING: phases.Phase.RETRYING,
    Kind.SUCCEEDED: phases.Phase.SUCCEEDED,
    Kind.FAILED: phases.Phase.FAILED,
    Kind.CANCELLED: phases.Phase.CANCELLED,
}


class TaskEvent(BaseModel):
    """One thing that happened to one LongTask."""

    model_config = ConfigDict(extra="ignore")

    kind: Kind
    namespace: str
    name: str
    uid: str
    attempt: int = 0
    at: float = Field(default_factory=time.time, description="Unix time of the event.")
    progress: float | None = Field(default=None, ge=0, le=100)
    message: str | None = None
    step: str | None = None
    worker: str | None = None
    result: Any = None
    error: dict[str, str] | None = None
    retry_at: float | None = Field(default=None, description="Unix time of the next attempt (retrying).")
    dead_lettered: bool | None = None
    pool: str | None = Field(default=None, description="The worker pool (queued events only).")
    items: dict[str, Any] | None = Field(
        default=None,
        description="A batch's counts (batch.Counts, with failedIndexes on its end): on its progress "
        "events, at most one per batch.REPORT_EVERY_SECONDS unless items failed, and its last event.",
    )
    failed_items: list[dict[str, Any]] | None = Field(
        default=None,
        description="Items that failed for good since the batch's previous event: {index, error} "
        "(at most batch.EVENT_FAILURES_MAX; GET .../items?phase=Failed lists them all).",
    )

    @property
    def phase(self) -> phases.Phase:
        return PHASE_OF[self.kind]

    @property
    def terminal(self) -> bool:
        return phases.is_terminal(self.phase)

    def encode(self) -> dict[str, str]:
        """The Redis Stream entry fields."""
        return {FIELD: self.model_dump_json(exclude_none=True)}

    @classmethod
    def decode(cls, fields: dict[Any, Any]) -> TaskEvent:
        raw = fields.get(FIELD, fields.get(FIELD.encode()))
        if raw is None:
            raise ValueError(f"stream entry has no {FIELD!r} field")
        return cls.model_validate_json(raw)
