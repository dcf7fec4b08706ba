"""Who is calling and what they ask to do, as Kubernetes authorizes it; pure data, no I/O.

Every gateway route maps to a Kubernetes verb on `longtasks.longtask.io` (or on its
`deadletters` subresource, or on another resource of the group: workerpools,
longtaskschedules), so that RBAC rules written for kubectl also govern the gateway.
"""

from __future__ import annotations

import dataclasses
import enum

from longtask_contracts import names

DEADLETTERS = "deadletters"  # the subresource that stands for the dead-letter queue


@dataclasses.dataclass(frozen=True)
class Identity:
    """The caller as the TokenReview saw it; passed on unchanged in every SubjectAccessReview."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def extra_dict(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.extra}


ANONYMOUS = Identity(username="system:anonymous", groups=("system:unauthenticated",))


@dataclasses.dataclass(frozen=True)
class Action:
    """One verb on longtasks (subresource "") or on longtasks/<subresource>, or on another
    resource of the group (`plural`, e.g. workerpools)."""

    verb: str
    subresource: str = ""
    plural: str = names.PLURAL

    @property
    def resource(self) -> str:
        plural = f"{self.plural}.{names.GROUP}"
        return f"{plural}/{self.subresource}" if self.subresource else plural


class Route(enum.Enum):
    """The Kubernetes action each gateway route needs (see docs/security.md)."""

    CREATE_TASK = Action("create")  # POST /v1/namespaces/{ns}/tasks
    GET_TASK = Action("get")  # GET .../tasks/{name}, its .../items, .../log, SSE .../events, WebSocket .../ws
    LIST_TASKS = Action("list")  # GET .../tasks
    WATCH_TASKS = Action("watch")  # GET /v1/namespaces/{ns}/events (every task's events, like kubectl -w)
    CANCEL_TASK = Action("patch")  # POST .../tasks/{name}/cancel (patches spec.cancel)
    LIST_DEADLETTERS = Action("list", DEADLETTERS)  # GET /v1/deadletters
    REPLAY_DEADLETTERS = Action("patch", DEADLETTERS)  # POST /v1/deadletters/.../replay
    LIST_POOLS = Action("list", plural=names.POOL_PLURAL)  # GET /v1/namespaces/{ns}/workerpools
    # GET /v1/namespaces/{ns}/schedules (and list on longtasks, for their runs)
    LIST_SCHEDULES = Action("list", plural=names.SCHEDULE_PLURAL)
    # GET .../schedules/{name} (and list on longtasks, for its runs)
    GET_SCHEDULE = Action("get", plural=names.SCHEDULE_PLURAL)
    # POST .../schedules/{name}/suspend and .../resume (patch spec.suspend, as kubectl patch would)
    PATCH_SCHEDULE = Action("patch", plural=names.SCHEDULE_PLURAL)
    # POST .../schedules/{name}/trigger is a create of a LongTask: CREATE_TASK.
