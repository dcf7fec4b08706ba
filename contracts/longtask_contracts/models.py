"""Pydantic models of the LongTask resource (spec and status); pure data, no I/O here.

Field names are the resource's camelCase names; the limits here are the CRD's limits
(tests/integration/test_validation.py runs one table of bad specs against both).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from longtask_contracts import phases

TASK_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_.-]{0,126}[a-z0-9])?$"
POOL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
PARAMS_MAX_PROPERTIES = 64
PARAMS_MAX_BYTES = 64 * 1024  # JSON-encoded; the gateway enforces it, etcd objects stay small
# A batch's items in the object itself (spec.items): at most this many, each at most
# ITEM_MAX_BYTES of JSON and ITEM_MAX_PROPERTIES keys, all of them together at most
# INLINE_ITEMS_MAX_BYTES, so the object stays well inside etcd's 1.5 MiB. More go through
# the gateway, which stores them in Redis and names them in spec.itemsFrom (docs/batches.md).
INLINE_ITEMS_MAX = 1000
ITEM_MAX_PROPERTIES = 64
ITEM_MAX_BYTES = 16 * 1024
INLINE_ITEMS_MAX_BYTES = 512 * 1024
UPLOAD_ITEMS_MAX = 1_000_000  # spec.itemsFrom.count
UPLOAD_PATTERN = r"^[a-z0-9]{8,64}$"
PARALLELISM_MAX = 1000
DEFAULT_PARALLELISM = 16


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False)

    def to_k8s(self) -> dict[str, Any]:
        """The resource form: camelCase keys, no unset optional fields, JSON values."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RetryPolicy(_Model):
    """How failed attempts are retried: exponential backoff with jitter."""

    max_retries: Annotated[int, Field(ge=0, le=100, description="Retries after the first attempt.")] = 3
    backoff_seconds: Annotated[float, Field(ge=0, le=3600, description="Delay before the first retry.")] = 2
    backoff_factor: Annotated[
        float, Field(ge=1, le=10, description="Each retry's delay is the previous one times this.")
    ] = 2
    max_backoff_seconds: Annotated[
        float, Field(ge=0, le=86400, description="Upper bound of one delay; at least backoffSeconds.")
    ] = 600
    jitter: Annotated[
        float, Field(ge=0, le=1, description="Random fraction added to or taken from each delay.")
    ] = 0.1

    @model_validator(mode="after")
    def _bounds_ordered(self) -> RetryPolicy:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("maxBackoffSeconds must be at least backoffSeconds")
        return self


class ItemsFrom(_Model):
    """Where a batch's items are when they did not fit in the object: stored by the gateway."""

    upload: Annotated[
        str, Field(pattern=UPLOAD_PATTERN, description="The id of the items the gateway stored (Redis).")
    ]
    count: Annotated[int, Field(ge=1, le=UPLOAD_ITEMS_MAX, description="How many items it holds.")]


class LongTaskSpec(_Model):
    """What to run, where, and under which limits."""

    task: Annotated[
        str,
        Field(
            pattern=TASK_NAME_PATTERN,
            max_length=128,
            description="Registered task name, e.g. demo.sleep (lowercase, digits, '.', '_', '-').",
            examples=["demo.sleep"],
        ),
    ]
    params: Annotated[
        dict[str, Any],
        Field(
            max_length=PARAMS_MAX_PROPERTIES,
            description=f"Keyword arguments of the task (JSON object, at most {PARAMS_MAX_BYTES} bytes).",
            examples=[{"seconds": 5, "steps": 10}],
        ),
    ] = Field(default_factory=dict)
    pool: Annotated[
        str,
        Field(pattern=POOL_PATTERN, max_length=63, description="Worker pool (and so queue) that runs it."),
    ] = "default"
    priority: Annotated[
        int, Field(ge=0, le=9, description="0 (default) to 9; higher runs first within a pool.")
    ] = 0
    timeout_seconds: Annotated[
        int, Field(ge=1, le=604800, description="Deadline of the whole task, retries included.")
    ] = 3600
    attempt_timeout_seconds: Annotated[
        int | None,
        Field(ge=1, le=604800, description="Time limit of one attempt (default: timeoutSeconds)."),
    ] = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    ttl_seconds_after_finished: Annotated[
        int | None, Field(ge=0, le=31536000, description="Delete the LongTask this long after it finished.")
    ] = None
    cancel: Annotated[bool, Field(description="Set true to cancel the task.")] = False
    items: Annotated[
        list[dict[str, Any]] | None,
        Field(
            min_length=1,
            max_length=INLINE_ITEMS_MAX,
            description=f"A batch: each item (a JSON object, at most {ITEM_MAX_BYTES} bytes) runs the task "
            f"once with params merged with it (the item's keys win). At most {INLINE_ITEMS_MAX} items "
            "here; more through the gateway (itemsFrom).",
        ),
    ] = None
    items_from: ItemsFrom | None = None
    parallelism: Annotated[
        int | None,
        Field(
            ge=1,
            le=PARALLELISM_MAX,
            description=f"A batch's items in flight at most (default {DEFAULT_PARALLELISM}); "
            "only with items.",
        ),
    ] = None
    max_failed_items: Annotated[
        int | None,
        Field(
            ge=0,
            le=UPLOAD_ITEMS_MAX,
            description="End a batch Failed (the rest cancelled) once more items than this failed; "
            "only with items.",
        ),
    ] = None

    @field_validator("items")
    @classmethod
    def _items_small(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is None:
            return value
        total = 0
        for index, item in enumerate(value):
            if len(item) > ITEM_MAX_PROPERTIES:
                raise ValueError(f"items[{index}] has {len(item)} keys; the limit is {ITEM_MAX_PROPERTIES}")
            size = len(json.dumps(item, separators=(",", ":")).encode())
            if size > ITEM_MAX_BYTES:
                raise ValueError(
                    f"items[{index}] is {size} bytes encoded as JSON; the limit is {ITEM_MAX_BYTES}"
                )
            total += size
        if total > INLINE_ITEMS_MAX_BYTES:
            raise ValueError(
                f"items are {total} bytes encoded as JSON; the limit in the object is "
                f"{INLINE_ITEMS_MAX_BYTES} (send larger batches through the gateway)"
            )
        return value

    # "parallelism and maxFailedItems only on a batch" is the CRD's and the gateway's rule
    # (batch_field_errors), not this model's: a batch's spec travels without its inline
    # items (without_items) and keeps them. The one rule here is a field validator so its
    # error names the field as the CRD's rule does (spec.itemsFrom); it runs after items
    # (declared first).
    @field_validator("items_from")
    @classmethod
    def _one_source(cls, value: ItemsFrom | None, info: ValidationInfo) -> ItemsFrom | None:
        if value is not None and info.data.get("items") is not None:
            raise ValueError("give items or itemsFrom, not both")
        return value

    def batch_field_errors(self) -> list[str]:
        """What is wrong with this spec's batch fields as a resource's spec."""
        if not self.is_batch and (self.parallelism is not None or self.max_failed_items is not None):
            return ["parallelism and maxFailedItems apply to batches only (items or itemsFrom)"]
        return []

    @property
    def is_batch(self) -> bool:
        return self.items is not None or self.items_from is not None

    @property
    def item_count(self) -> int:
        """How many items the batch has (0: not a batch)."""
        if self.items is not None:
            return len(self.items)
        return self.items_from.count if self.items_from is not None else 0

    def lanes(self, items: int | None = None) -> int:
        """How many items of the batch run at once at most: spec.parallelism, never more than
        the items (`items`: their count, for a spec that travels without them)."""
        return max(
            1, min(self.parallelism or DEFAULT_PARALLELISM, self.item_count if items is None else items)
        )

    def without_items(self) -> LongTaskSpec:
        """This spec without its inline items (what travels in messages and the ledger)."""
        return self.model_copy(update={"items": None}) if self.items is not None else self

    @field_validator("params")
    @classmethod
    def _params_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > PARAMS_MAX_BYTES:
            raise ValueError(f"params is {size} bytes encoded as JSON; the limit is {PARAMS_MAX_BYTES}")
        return value


class TaskError(_Model):
    type: str = Field(description="Error class, e.g. UnknownTask, PermanentError, TimeoutError.")
    message: str = Field(description="What went wrong.")


class LongTaskStatus(_Model):
    """What is true now; written only by the operator."""

    model_config = ConfigDict(extra="ignore")

    phase: phases.Phase = phases.Phase.PENDING
    progress: float = 0
    progress_text: str | None = None
    message: str | None = None
    step: str | None = None
    attempts: int = 0
    worker: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: TaskError | None = None
    dead_lettered: bool | None = None
    observed_generation: int | None = None
    next_attempt_at: datetime | None = None
    attempt_history: list[dict[str, Any]] = Field(default_factory=list)
    replays: int | None = None
    items: dict[str, Any] | None = None
    items_text: str | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class WorkerPoolSpec(_Model):
    """Which worker Deployment serves which pool, and how far it may scale."""

    model_config = ConfigDict(extra="ignore")

    deployment: Annotated[
        str, Field(max_length=253, description="The worker Deployment it scales (same namespace).")
    ]
    pool: Annotated[
        str | None,
        Field(pattern=POOL_PATTERN, max_length=63, description="The LongTask spec.pool it serves."),
    ] = None
    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=0, le=1000)] = 10
    tasks_per_replica: Annotated[int | None, Field(ge=1, le=10000)] = None
    cooldown_seconds: Annotated[float, Field(ge=0, le=86400)] = 60
    max_scale_up_step: Annotated[int, Field(ge=1, le=1000)] = 10
    paused: bool = False

    def pool_name(self, own_name: str) -> str:
        """The pool it serves: spec.pool, or the WorkerPool's own name."""
        return self.pool or own_name
