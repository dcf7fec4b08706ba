"""The gateway's request and answer models (TaskCreate, TaskPublic, TaskList, ProgressEvent).

Pure data and pure conversions from LongTask objects; no I/O here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from longtask_api import patterns
from longtask_contracts import ledger, models, names, phases

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
    spec: models.LongTaskSpec

    def to_resource(self) -> dict[str, Any]:
        # No finalizer (the operator puts none on LongTasks either): a created task looks the
        # same whether the gateway or kubectl made it.
        metadata: dict[str, Any] = {"labels": self.labels}
        if self.name:
            metadata["name"] = self.name
        else:
            metadata["generateName"] = self.spec.task.replace(".", "-").replace("_", "-")[:50] + "-"
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": metadata,
            "spec": self.spec.to_k8s(),
        }


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


class DeadLetterList(BaseModel):
    items: list[ledger.DeadLetter]
    continue_token: str | None = Field(
        default=None,
        alias="continue",
        description="Pass as ?continue= to get the next page of a listing; absent on the last page.",
    )

    model_config = ConfigDict(populate_by_name=True)
