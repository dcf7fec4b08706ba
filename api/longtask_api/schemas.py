"""The gateway's request and answer models (TaskCreate, TaskPublic, TaskList, ProgressEvent).

Pure data and pure conversions from LongTask objects; no I/O here.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from longtask_api import patterns
from longtask_contracts import batch, ledger, models, names, phases

# Label keys and values as Kubernetes takes them (patterns.py says how far).
LabelKey = Annotated[str, Field(pattern=patterns.LABEL_KEY, max_length=317)]
LabelValue = Annotated[str, Field(pattern=patterns.LABEL_VALUE, max_length=63)]


def _label_keys_rule(schema: dict[str, Any]) -> None:
    """State the keys' rule as propertyNames, values as additionalProperties.

    pydantic writes a constrained key as patternProperties, which lets any other key
    through in the document while the gateway refuses it.
    """
    ((key_pattern, value_schema),) = schema.pop("patternProperties").items()
    schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": key_pattern}
    schema["additionalProperties"] = value_schema


def _item_small(item: dict[str, Any]) -> dict[str, Any]:
    if len(item) > models.ITEM_MAX_PROPERTIES:
        raise ValueError(f"the item has {len(item)} keys; the limit is {models.ITEM_MAX_PROPERTIES}")
    if (size := len(_compact(item).encode())) > models.ITEM_MAX_BYTES:
        raise ValueError(f"the item is {size} bytes encoded as JSON; the limit is {models.ITEM_MAX_BYTES}")
    return item


# One item of a create's `items`: its errors name it (items.3).
BatchItem = Annotated[dict[str, Any], AfterValidator(_item_small)]


def _no_items_from(schema: dict[str, Any]) -> None:
    """spec.itemsFrom is the gateway's own (batchinput.check refuses it): not in the create's schema."""
    schema.get("properties", {}).pop("itemsFrom", None)


class CreateSpec(models.LongTaskSpec):
    """The LongTask's spec as a create gives it: everything but spec.itemsFrom, which the
    gateway writes itself when it stores a batch's items (uploads.py)."""

    model_config = ConfigDict(json_schema_extra=_no_items_from)


class TaskCreate(BaseModel):
    """A task to create: the LongTask's spec, and optionally its name and labels."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"spec": {"task": "demo.sleep", "params": {"seconds": 10, "steps": 20}}},
                {
                    "name": "embed-handbook",
                    "labels": {"team": "search"},
                    "spec": {
                        "task": "docs.embed",
                        "params": {"directory": "/data/handbook"},
                        "retry": {"maxRetries": 5},
                    },
                },
                {
                    "name": "embed-two-documents",
                    "spec": {"task": "docs.embed", "parallelism": 8},
                    "items": [{"path": "/data/handbook/a.pdf"}, {"path": "/data/handbook/b.pdf"}],
                },
            ]
        },
    )

    name: Annotated[
        str | None,
        Field(
            default=None,
            pattern=patterns.OBJECT_NAME,
            max_length=253,
            description="The LongTask's name; generated from the task name when omitted.",
        ),
    ]
    labels: Annotated[
        dict[LabelKey, LabelValue],
        Field(
            default_factory=dict,
            max_length=32,
            description="Kubernetes labels to set.",
            json_schema_extra=_label_keys_rule,
        ),
    ]
    spec: CreateSpec
    items: Annotated[
        list[BatchItem] | None,
        Field(
            default=None,
            min_length=1,
            description="Makes the task a batch of up to LONGTASK_MAX_BATCH_ITEMS (100,000) items, each "
            f"a JSON object of at most {models.ITEM_MAX_PROPERTIES} keys and {models.ITEM_MAX_BYTES} bytes "
            "of JSON that runs spec.task once with spec.params merged with it. Items that fit in the "
            f"object (at most {models.INLINE_ITEMS_MAX}, {models.INLINE_ITEMS_MAX_BYTES} bytes together) "
            "become spec.items; larger batches are stored in Redis and named by spec.itemsFrom. "
            "Not together with spec.items.",
        ),
    ]

    @field_validator("items")
    @classmethod
    def _one_source(
        cls, value: list[dict[str, Any]] | None, info: ValidationInfo
    ) -> list[dict[str, Any]] | None:
        spec = info.data.get("spec")
        if value is not None and spec is not None and spec.is_batch:
            raise ValueError("give items or spec.items, not both (and spec.itemsFrom is the gateway's own)")
        return value

    def encoded_items(self) -> list[str]:
        """Each of `items` as compact JSON (what the upload stores and the limits measure)."""
        return [_compact(item) for item in self.items or ()]

    def to_resource(self, *, items_from: models.ItemsFrom | None = None) -> dict[str, Any]:
        """The LongTask to create: `items` in spec.items, or `items_from` naming where the
        gateway stored them (uploads.py)."""
        # No finalizer (the operator puts none on LongTasks either): a created task looks the
        # same whether the gateway or kubectl made it.
        metadata: dict[str, Any] = {"labels": self.labels}
        if self.name:
            metadata["name"] = self.name
        else:
            metadata["generateName"] = self.spec.task.replace(".", "-").replace("_", "-")[:50] + "-"
        spec = self.spec.to_k8s()
        if items_from is not None:
            spec["itemsFrom"] = items_from.to_k8s()
        elif self.items is not None:
            spec["items"] = self.items
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": metadata,
            "spec": spec,
        }


def _compact(item: Any) -> str:
    return json.dumps(item, separators=(",", ":"))


def fits_inline(encoded: list[str]) -> bool:
    """Whether items (TaskCreate.encoded_items) fit in the object's spec.items (the CRD's and
    models' limits); those that do not go to an upload."""
    return len(encoded) <= models.INLINE_ITEMS_MAX and (
        sum(len(e.encode()) for e in encoded) <= models.INLINE_ITEMS_MAX_BYTES
    )


class Links(BaseModel):
    self: str = Field(examples=["/v1/namespaces/default/tasks/demo-sleep-x7k2p"])
    events: str = Field(examples=["/v1/namespaces/default/tasks/demo-sleep-x7k2p/events"])


class TaskCreated(BaseModel):
    name: str
    namespace: str
    uid: str
    phase: phases.Phase = phases.Phase.PENDING
    links: Links


class TaskPublic(BaseModel):
    name: str
    namespace: str
    uid: str
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = Field(default=None, alias="createdAt")
    spec: dict[str, Any]
    status: models.LongTaskStatus
    links: Links

    model_config = ConfigDict(populate_by_name=True)


class TaskList(BaseModel):
    items: list[TaskPublic]
    continue_token: str | None = Field(
        default=None,
        alias="continue",
        description="Pass as ?continue= to get the next page; absent on the last page.",
    )

    model_config = ConfigDict(populate_by_name=True)


class ProgressEvent(BaseModel):
    """The data of one SSE event (the SSE id is the Redis stream id; the event name is kind)."""

    kind: str = Field(examples=["progress"])
    phase: phases.Phase
    attempt: int = 0
    at: float
    progress: float | None = None
    message: str | None = None
    step: str | None = None
    worker: str | None = None
    result: Any = None
    error: dict[str, str] | None = None
    dead_lettered: bool | None = Field(
        default=None, description="Failed and parked in the dead-letter queue."
    )
    items: dict[str, Any] | None = Field(
        default=None,
        description="A batch's item counts (total, queued, running, succeeded, failed, cancelled, seq; "
        "failedIndexes on its last event), as of this event.",
        examples=[
            {"total": 2000, "queued": 1180, "running": 16, "succeeded": 800, "failed": 4, "cancelled": 0}
        ],
    )
    failed_items: list[dict[str, Any]] | None = Field(
        default=None,
        description="Items that failed for good since the batch's previous event, {index, error}: a "
        "sample (at most 100); GET .../items?phase=Failed lists them all.",
    )


class TaskEventPublic(ProgressEvent):
    """The data of one event of the namespace-wide stream: a ProgressEvent and whose it is."""

    name: str
    uid: str


class LogEntry(BaseModel):
    """One event of a task's event log, with its stream id (the SSE id)."""

    id: str
    event: str
    data: ProgressEvent


class EventLog(BaseModel):
    items: list[LogEntry]


def links(namespace: str, name: str) -> Links:
    base = f"/v1/namespaces/{namespace}/tasks/{name}"
    return Links(self=base, events=f"{base}/events")


def created(namespace: str, *, name: str, uid: str) -> TaskCreated:
    """The answer of a create (the same whether the request created the task or retried it)."""
    return TaskCreated(name=name, namespace=namespace, uid=uid, links=links(namespace, name))


def public(obj: dict[str, Any]) -> TaskPublic:
    meta = obj["metadata"]
    return TaskPublic(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        labels=meta.get("labels") or {},
        createdAt=meta.get("creationTimestamp"),
        spec=obj.get("spec") or {},
        status=models.LongTaskStatus.model_validate(obj.get("status") or {}),
        links=links(meta["namespace"], meta["name"]),
    )


class ItemPublic(BaseModel):
    """One item of a batch (batch.ItemRecord.to_api): where it is, its attempts, its outcome."""

    index: int = Field(description="The item's position in the batch's items, from 0.")
    phase: batch.ItemPhase
    attempts: int = Field(default=0, description="Attempts started so far.")
    result: Any = Field(default=None, description="What its task returned (phase Succeeded).")
    error: dict[str, str] | None = Field(
        default=None, description="Why its latest attempt failed: {type, message}."
    )
    started_at: str | None = Field(default=None, alias="startedAt", description="Its first attempt's start.")
    finished_at: str | None = Field(default=None, alias="finishedAt", description="When it ended.")
    next_attempt_at: str | None = Field(
        default=None, alias="nextAttemptAt", description="When its next attempt is due (phase Retrying)."
    )

    model_config = ConfigDict(populate_by_name=True)


class ItemList(BaseModel):
    items: list[ItemPublic]
    continue_token: str | None = Field(
        default=None,
        alias="continue",
        description="Pass as ?continue= (with the same phase) to get the next page; absent on the last. "
        "A page may hold fewer than `limit` items and still have one.",
    )

    model_config = ConfigDict(populate_by_name=True)


class DeadLetterList(BaseModel):
    items: list[ledger.DeadLetter]
    continue_token: str | None = Field(
        default=None,
        alias="continue",
        description="Pass as ?continue= to get the next page of a listing; absent on the last page.",
    )

    model_config = ConfigDict(populate_by_name=True)


class ScheduleCondition(BaseModel):
    """The schedule's Ready condition as the operator wrote it (False: why, e.g. an invalid schedule)."""

    status: str = Field(examples=["True"])
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = Field(default=None, alias="lastTransitionTime")

    model_config = ConfigDict(populate_by_name=True)


class ScheduleRun(BaseModel):
    """One run of a schedule: a LongTask labelled longtask.io/schedule=<its name>."""

    name: str
    phase: phases.Phase = phases.Phase.PENDING
    manual: bool = Field(default=False, description="Made by a trigger (Run now), not by the schedule.")
    scheduled_at: str | None = Field(
        default=None, alias="scheduledAt", description="The scheduled time it stands for (none if manual)."
    )
    created_at: str | None = Field(default=None, alias="createdAt")
    started_at: str | None = Field(default=None, alias="startedAt")
    finished_at: str | None = Field(default=None, alias="finishedAt")
    links: Links

    model_config = ConfigDict(populate_by_name=True)


class SchedulePublic(BaseModel):
    """A LongTaskSchedule: its spec's main fields, its status and its latest runs, newest first."""

    name: str
    namespace: str
    uid: str
    schedule: str = Field(examples=["0 2 * * *"])
    time_zone: str = Field(default="UTC", alias="timeZone", examples=["Europe/Berlin"])
    suspend: bool = False
    concurrency_policy: str = Field(default="Allow", alias="concurrencyPolicy")
    next_schedule_time: str | None = Field(
        default=None,
        alias="nextScheduleTime",
        description="When the next run is due, as the operator last wrote it (absent while suspended, "
        "invalid, or not yet seen by the operator).",
    )
    last_schedule_time: str | None = Field(default=None, alias="lastScheduleTime")
    last_successful_time: str | None = Field(default=None, alias="lastSuccessfulTime")
    missed_runs: int | None = Field(default=None, alias="missedRuns")
    ready: ScheduleCondition | None = Field(default=None, description="The Ready condition, if written.")
    runs: list[ScheduleRun] | None = Field(
        default=None,
        description="Its latest runs (at most `runs` of the query), newest first; null in the answers "
        "of suspend and resume, which do not read runs.",
    )

    model_config = ConfigDict(populate_by_name=True)


class ScheduleList(BaseModel):
    items: list[SchedulePublic]
