"""Shared fakes for the components' collaborators, each checked against the real class.

Every fake here satisfies a Protocol that the real class satisfies too, declared with
`conforms.fake_of` and checked by tests/unit/test_fakes.py, so a fake cannot drift from
what it stands in for. A Protocol names only what the code under test calls. Fakes record
what they were asked and answer from plain data; they must not do I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from celery import Celery

from longtask_contracts import events, ledger, names
from longtask_operator import kube
from longtask_runtime import kubeerrors
from longtask_worker import store
from tests import conforms

# -- the operator's Kubernetes client (longtask_operator.kube.Kube) -------------------------


class StatusKube(Protocol):
    """What the status sync (statussync.StatusSync) asks of the apiserver."""

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]: ...

    async def patch_status(self, *, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None: ...

    async def post_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        warning: bool = False,
        kind: str = names.KIND,
    ) -> None: ...


@conforms.fake_of(StatusKube, real=kube.Kube)
@dataclass
class RecordingKube:
    """Records what the sync asks of the apiserver; the first `failing_gets` GETs fail, and
    every GET of a name in `unreadable`, every status write of one in `unwritable`."""

    uids: dict[str, str] = field(default_factory=dict)  # name -> uid, for GET
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> status, for GET
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    posted: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, reason, warning)
    gets: int = 0
    failing_gets: int = 0
    unreadable: set[str] = field(default_factory=set)
    unwritable: set[str] = field(default_factory=set)

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        if name in self.unreadable:
            raise kubeerrors.Unavailable("etcd timed out", what=f"longtask {namespace}/{name}")
        if self.failing_gets:
            self.failing_gets -= 1
            raise kubeerrors.Unavailable("apiserver restarting", what=f"longtask {namespace}/{name}")
        return {"metadata": {"uid": self.uids[name]}, "status": self.statuses.get(name, {})}

    async def patch_status(self, *, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        if name in self.unwritable:
            raise kubeerrors.Invalid("refused by a policy", what=f"longtask {namespace}/{name}")
        self.patches.append((name, dict(status)))

    async def post_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        warning: bool = False,
        kind: str = names.KIND,
    ) -> None:
        self.posted.append((name, reason, warning))


class TaskListing(Protocol):
    """The LIST pages and the WATCH the LongTask watch (taskwatch.TaskWatch.follow) reads."""

    def longtask_pages(
        self, *, namespace: str | None, field_selector: str | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]: ...

    def longtask_events(
        self, *, namespace: str | None, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...


@conforms.fake_of(TaskListing, real=kube.Kube)
class ListingKube:
    """Serves `everything` (pages of LongTasks) to a LIST without selector, and their
    unfinished ones to a LIST with `unfinished_selector`; `unselectable`: a CRD too old for
    that selector. Its WATCH has no event. Records the selectors and the watch's start."""

    def __init__(
        self, *, everything: list[list[dict[str, Any]]], unfinished_selector: str, unselectable: bool = False
    ) -> None:
        self.everything = everything
        self.unfinished_selector = unfinished_selector
        self.unselectable = unselectable
        self.selectors: list[str | None] = []
        self.watched_from: list[str] = []

    async def longtask_pages(
        self, *, namespace: str | None, field_selector: str | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        self.selectors.append(field_selector)
        if field_selector is None:
            for i, page in enumerate(self.everything):
                yield page, f"full-{i}"
            return
        assert field_selector == self.unfinished_selector
        if self.unselectable:
            raise kubeerrors.Unselectable(field_selector)
        yield [o for page in self.everything for o in page if not _finished(o)], "unfinished"

    async def longtask_events(
        self, *, namespace: str | None, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(resource_version)
        await asyncio.Event().wait()  # no event; the watch waits here until cancelled
        yield "", {}


def _finished(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Cancelled")


# -- the worker's task store (longtask_worker.store.Store) ----------------------------------


class TaskStore(Protocol):
    """What the runner (longtask_worker.runner) asks of the store at the Redis edge."""

    def publish(self, event: events.TaskEvent, *, ttl: int | None = None) -> None: ...

    def claim(
        self, dispatch: ledger.Dispatch, *, worker: str, lease_seconds: float, tag: str = ""
    ) -> bool: ...

    def renew(
        self, dispatch: ledger.Dispatch, *, worker: str, lease_seconds: float, tag: str = ""
    ) -> bool: ...

    def finish(
        self,
        *,
        dispatch: ledger.Dispatch,
        worker: str,
        event: events.TaskEvent,
        retry_at: float | None = None,
        dead_letter: ledger.DeadLetter | None = None,
        tag: str = "",
    ) -> bool: ...

    def cancel_requested(self, uid: str) -> bool: ...


@conforms.fake_of(TaskStore, real=store.Store)
class MemoryStore:
    """The task store in memory: events, claims, finished and cancelled tasks, retries and
    dead letters, with the Lua scripts' rules (a claim is refused while held or once done;
    finish is refused once done)."""

    def __init__(self) -> None:
        self.events: list[events.TaskEvent] = []
        self.claims: dict[str, str] = {}
        self.done: set[str] = set()
        self.cancelled: set[str] = set()
        self.retries: list[tuple[ledger.Dispatch, float]] = []
        self.dead: list[ledger.DeadLetter] = []

    def publish(self, event: events.TaskEvent, *, ttl: int | None = None) -> None:
        self.events.append(event)
        if event.terminal:
            self.done.add(event.uid)

    def claim(self, dispatch: ledger.Dispatch, *, worker: str, lease_seconds: float, tag: str = "") -> bool:
        if dispatch.uid in self.done or dispatch.uid in self.claims:
            return False
        self.claims[dispatch.uid] = f"{dispatch.attempt}:{worker}"
        return True

    def renew(self, dispatch: ledger.Dispatch, *, worker: str, lease_seconds: float, tag: str = "") -> bool:
        return self.claims.get(dispatch.uid, f"{dispatch.attempt}:{worker}") == f"{dispatch.attempt}:{worker}"

    def finish(
        self,
        *,
        dispatch: ledger.Dispatch,
        worker: str,
        event: events.TaskEvent,
        retry_at: float | None = None,
        dead_letter: ledger.DeadLetter | None = None,
        tag: str = "",
    ) -> bool:
        if dispatch.uid in self.done:
            return False
        self.publish(event)
        if retry_at is not None:
            self.retries.append((dispatch.next(), retry_at))
        if dead_letter is not None:
            self.dead.append(dead_letter)
        self.claims.pop(dispatch.uid, None)
        return True

    def cancel_requested(self, uid: str) -> bool:
        return uid in self.cancelled


# -- Celery and Redis clients ----------------------------------------------------------------


class Closes(Protocol):
    """A client closed when its owner closes (a Celery sender)."""

    def close(self) -> None: ...


@conforms.fake_of(Closes, real=Celery)
class ClosingCelery:
    """A Celery sender that only remembers whether it was closed."""

    closed = False

    def close(self) -> None:
        self.closed = True


class AsyncCloses(Protocol):
    """A client closed, awaited, when its owner closes (a redis.asyncio client)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None: ...


@conforms.fake_of(AsyncCloses, real=aioredis.Redis)
class ClosingRedis:
    """A redis.asyncio client that only remembers whether it was closed."""

    closed = False

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        self.closed = True


# -- the autoscaler's informers (longtask_operator.informer.Informer) -------------------------


class WatchingKube(Protocol):
    """What an informer asks of the apiserver: a LIST, then WATCHes."""

    async def listing(
        self, *, kind: str, namespace: str, field_selector: str = "", label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]: ...

    def changes(
        self,
        *,
        kind: str,
        namespace: str,
        resource_version: str,
        field_selector: str = "",
        label_selector: str = "",
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...


@conforms.fake_of(WatchingKube, real=kube.Kube)
@dataclass
class ScriptedWatchKube:
    """Answers LISTs from `lists` and WATCHes from `watches`, in order: each watch yields its
    events, then ends (the server's timeout) or raises its exception. Once the script is
    used up a watch waits forever, and `idle` is set. Records the versions watched from."""

    lists: list[tuple[list[dict[str, Any]], str]] = field(default_factory=list)
    watches: list[tuple[list[tuple[str, dict[str, Any]]], Exception | None]] = field(default_factory=list)
    listed: int = 0
    watched_from: list[str] = field(default_factory=list)
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    async def listing(
        self, *, kind: str, namespace: str, field_selector: str = "", label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        self.listed += 1
        return self.lists.pop(0)

    async def changes(
        self,
        *,
        kind: str,
        namespace: str,
        resource_version: str,
        field_selector: str = "",
        label_selector: str = "",
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            self.idle.set()
            await asyncio.Event().wait()
        events_, ending = self.watches.pop(0)
        for event in events_:
            yield event
        if ending is not None:
            raise ending
