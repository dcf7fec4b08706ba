"""Keeps Redis in step with the LongTasks that exist: one LIST, then a WATCH, of them all.

It writes nothing to a LongTask (no finalizer, no annotation): what must happen once
happens once through Redis — the first attempt's guard (sending.send_first), the worker's
claim, the replay marker — so an event seen twice, or every object seen again after a
restart, costs a Redis round trip and no apiserver request. The unfinished LongTasks are
listed first (a field selector on status.phase), so a restarted operator sends their
attempts before it reads finished ones; a finished LongTask then costs one look at its
phase, so 10,000 of them cost a paged LIST read in the background. (The watch is our own,
not Kopf's: Kopf spends milliseconds of CPU on every object it lists, which 10,000
finished LongTasks turn into a minute of catching up.)

Events of one LongTask are handled in order; events of different LongTasks concurrently, up
to CONCURRENCY at a time (a burst of creates is dispatched in parallel).

After each LIST (at start and after every relist) it forgets at once the tasks Redis held
unfinished before the LIST began whose LongTask the LIST did not show (deleted while no
watch followed them; _forget_deleted). It keeps the inventory of unfinished LongTasks that
the sweep (tasksweep.py) checks for what no watch event shows; which namespaces are ours
is scope.py's. It must not write statuses (statussync.py does) nor decide retries
(maintenance.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import redis.asyncio as aioredis
from celery import Celery

from longtask_contracts import ledger, logs, models, names, phases, poolaccess, wire
from longtask_operator import dispatch, kube, loopguard, metrics, scope
from longtask_runtime import kubeerrors, sending

log = logging.getLogger(__name__)

# LongTasks whose events are handled at the same time, at most.
CONCURRENCY = 64
# The field selector of unfinished LongTasks (the CRD offers status.phase; an absent phase,
# a LongTask no one has written a status for yet, is selected too).
UNFINISHED = ",".join(f"status.phase!={phase.value}" for phase in sorted(phases.TERMINAL))


@dataclass
class Unfinished:
    namespace: str
    name: str
    seen: float  # monotonic time of the first event that showed it unfinished
    sent: bool = False  # its first attempt was sent (by us, or the guard says so)


@dataclass
class _Listing:
    uids: set[str] = field(default_factory=set)
    done: bool = False


class TaskWatch:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        celery: Celery,
        kube: kube.Kube,
        pools: poolaccess.Claims,
        pools_ready: asyncio.Event | None = None,
        namespaces: list[str] | None = None,
        on_seen: Callable[[str | None, str, dict[str, Any]], None] = lambda event_type, uid, status: None,
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.kube = kube
        self.pools = pools  # who may use which pool (kept current by poolwatch)
        self.pools_ready = pools_ready  # set once `pools` was listed: follow() waits for it
        self.namespaces = namespaces or []
        self.on_seen = on_seen  # told of every event (metrics: LongTasks by phase)
        self.unfinished: dict[str, Unfinished] = {}  # by uid; what the sweep checks
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._last: dict[str, asyncio.Task[None]] = {}  # each LongTask's latest event in hand
        # One loop (follow) per scope, each with its failure record, named as its task.
        self.guards = {
            ns: loopguard.Guard(f"longtask-watch-{ns or 'all'}") for ns in scope.scopes(self.namespaces)
        }
        self._unlisted: set[str | None] = set(self.guards)  # scopes whose LIST is not done

    def listed(self) -> bool:
        """Every scope's LIST is done, and what they did not show is forgotten: until then a
        task deleted while no watch followed it may still look alive in Redis, so the
        maintenance loop sends no retry (maintenance.py)."""
        return not self._unlisted

    # -- the watch ---------------------------------------------------------------------
    async def follow(self, namespace: str | None) -> None:
        """LIST the LongTasks of `namespace` (None: all) and WATCH them, forever; after an
        expired watch (410) or an error, LIST again. Every LongTask goes through on_event,
        listed ones with event type None.

        The unfinished LongTasks are listed first (a field selector on status.phase: a page
        or two even among 10,000 finished ones), and the watch starts from that list's
        resourceVersion at once, so after a restart a task created just before or after it
        is dispatched within a fraction of a second. Then every LongTask is listed, page by
        page, for what finished ones may still ask (a replay). A LongTask
        listed before, or shown by the watch meanwhile, is skipped: the copy in hand is the
        newer one.
        """
        guard = self.guards.setdefault(namespace, loopguard.Guard(f"longtask-watch-{namespace or 'all'}"))
        if self.pools_ready is not None:
            # Who may use which pool is known before any task is looked at: otherwise every
            # task listed at a restart would wait for the sweep (poolaccess UNKNOWN).
            await self.pools_ready.wait()
        while True:
            watching: asyncio.Task[None] | None = None
            try:
                watched = _Listing()  # what the watch showed while the LIST went on
                listed: set[str] = set()
                self._unlisted.add(namespace)
                before = await self._queued_or_running()
                async for page, version in self._listing(namespace):
                    if watching is None:
                        watching = asyncio.create_task(self._watch(namespace, version, watched, guard))
                    for obj in page:
                        uid = obj["metadata"]["uid"]
                        if uid not in listed and uid not in watched.uids:
                            await self._handle_in_order(None, obj, guard=guard)
                        listed.add(uid)
                self._forget_unlisted(namespace, listed | watched.uids)
                await self._forget_deleted(namespace, before=before, seen=listed | watched.uids)
                self._unlisted.discard(namespace)
                watched.done, watched.uids = True, set()
                if watching is not None:
                    await watching  # forever, unless it fails or expires
            except kubeerrors.Expired:
                log.info("the LongTask watch expired; listing again")
            except Exception as exc:  # list again
                self._unlisted.add(namespace)  # not followed until its next LIST is done
                await asyncio.sleep(guard.failed(exc))
            finally:
                if watching is not None and not watching.done():
                    watching.cancel()
                    await asyncio.gather(watching, return_exceptions=True)

    async def _listing(self, namespace: str | None) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """The pages of the unfinished LongTasks, then of all of them (see follow)."""
        try:
            async for page in self.kube.longtask_pages(namespace=namespace, field_selector=UNFINISHED):
                yield page
        except kubeerrors.Unselectable as exc:  # a CRD older than the operator: the whole LIST only
            log.warning("listing unfinished LongTasks first is not possible (%s); listing them all", exc)
        async for page in self.kube.longtask_pages(namespace=namespace):
            yield page

    async def _watch(
        self, namespace: str | None, version: str, watched: _Listing, guard: loopguard.Guard
    ) -> None:
        """Follow LongTask events from `version` forever (each watch ends after
        longtask_runtime.kube.WATCH_SECONDS: go on from where it was), noting their uids in
        `watched` until the LIST is done. A watch that delivers is what counts as a good
        round: a LIST that succeeds before a watch that fails does not."""
        while True:
            async for event_type, obj in self.kube.longtask_events(
                namespace=namespace, resource_version=version
            ):
                version = obj["metadata"]["resourceVersion"]
                if event_type != "BOOKMARK":
                    if not watched.done:
                        watched.uids.add(obj["metadata"]["uid"])
                    await self._handle_in_order(event_type, obj, guard=guard)
                guard.succeeded()
            guard.succeeded()

    def _forget_unlisted(self, namespace: str | None, listed: set[str]) -> None:
        """After a LIST (again, after an expired watch or an error): unfinished tasks of
        `namespace` it did not return were deleted meanwhile, unseen. Dropped from the
        inventory, they become the sweep's orphans, which it cancels and forgets."""
        for uid, task in list(self.unfinished.items()):
            if uid not in listed and namespace in (None, task.namespace):
                del self.unfinished[uid]

    async def _queued_or_running(self) -> set[str]:
        """The uids of the unfinished tasks Redis holds (each was sent, or its retry
        scheduled, before this call): read before a LIST, for _forget_deleted."""
        return {wire.text(uid) for uid in await self.redis.zrange(names.DEADLINES, 0, -1)}

    async def _forget_deleted(self, namespace: str | None, *, before: set[str], seen: set[str]) -> None:
        """Forget at once, after a LIST (at start, and after every relist), the tasks of
        `namespace` that Redis held unfinished `before` it began and that neither it nor
        the watch meanwhile showed: their LongTasks were deleted while no watch followed
        them (the operator was down, or its watch broken). Such a task's current attempt was
        written before the LIST began, and a LongTask is created before its first attempt is
        sent, so the LIST (one consistent snapshot) would have shown it had it still
        existed; a task sent after the LIST began is left to the sweep (tasksweep.py).
        Forgetting cancels a running attempt and refuses every later send and claim."""
        gone = sorted(before - seen)
        if not gone:
            return
        pipe = self.redis.pipeline(transaction=False)
        for uid in gone:
            pipe.get(names.current(uid))
        for uid, raw in zip(gone, await pipe.execute(), strict=True):
            if raw is None:
                continue  # finished or forgotten meanwhile
            current = ledger.Dispatch.model_validate_json(raw)
            if namespace not in (None, current.namespace) or not scope.in_scope(
                self.namespaces, current.namespace
            ):
                continue  # another watch's, or another operator's
            with logs.task(**current.about()):
                log.warning("its LongTask was deleted while no watch followed it; cancelling it")
                await dispatch.forget(redis=self.redis, uid=uid)  # a tombstone unless it is done
            metrics.SWEPT.labels(kind="orphan").inc()

    async def _handle_in_order(
        self, event_type: str | None, obj: dict[str, Any], *, guard: loopguard.Guard
    ) -> None:
        """Hand one event to on_event: at once (in order after that LongTask's previous one),
        with at most CONCURRENCY in hand; waits for a slot, so a burst cannot pile up."""
        if not scope.in_scope(self.namespaces, obj["metadata"]["namespace"]):
            return
        uid = obj["metadata"]["uid"]
        self.on_seen(event_type, uid, obj.get("status") or {})
        if event_type != "DELETED" and uid not in self._last and uid not in self.unfinished and _settled(obj):
            return  # a finished LongTask with nothing asked of it: most of a LIST after a restart
        await self._slots.acquire()
        job = asyncio.create_task(self._handle_after(event_type, obj, after=self._last.get(uid), guard=guard))
        self._last[uid] = job
        job.add_done_callback(lambda done: self._done(uid, done))

    def _done(self, uid: str, job: asyncio.Task[None]) -> None:
        self._slots.release()
        if self._last.get(uid) is job:
            del self._last[uid]

    async def _handle_after(
        self,
        event_type: str | None,
        obj: dict[str, Any],
        *,
        after: asyncio.Task[None] | None,
        guard: loopguard.Guard,
    ) -> None:
        if after is not None:
            await asyncio.wait([after])
        meta = obj["metadata"]
        with logs.task(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]):
            try:
                await self.on_event(event_type, obj)
            except Exception as exc:  # one LongTask: the sweep finds what this left undone
                guard.item_failed(
                    exc, what=f"handling a {event_type or 'listing'} event of this LongTask failed"
                )

    async def on_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """One event of a LongTask (event type None: listed)."""
        meta, status = body["metadata"], body.get("status") or {}
        uid = meta["uid"]
        finished = phases.is_terminal(phases.parse(status.get("phase")))
        if event_type == "DELETED":
            self.unfinished.pop(uid, None)
            if not finished:
                await dispatch.cancel(redis=self.redis, body=body, reason="the LongTask was deleted")
            await dispatch.forget(redis=self.redis, uid=uid, finished=finished)
            return
        if (meta.get("annotations") or {}).get(names.REPLAY_ANNOTATION):
            await self._replay_once(body)
        if finished:
            self.unfinished.pop(uid, None)
            return
        task = self.unfinished.setdefault(uid, Unfinished(meta["namespace"], meta["name"], time.monotonic()))
        if task.sent and not (body.get("spec") or {}).get("cancel"):
            return  # a status update of a task on its way: nothing to do
        if await reconcile(redis=self.redis, celery=self.celery, kube=self.kube, body=body, pools=self.pools):
            task.sent = True

    async def _replay_once(self, body: dict[str, Any]) -> None:
        """Replay for each new value of the replay annotation, once (the marker is in Redis,
        written after the replay: a crash in between replays again, which dispatch.replay
        turns into finishing the interrupted one)."""
        meta = body["metadata"]
        value = meta["annotations"][names.REPLAY_ANNOTATION]
        marker = names.replayed(meta["uid"])
        seen = await self.redis.get(marker)
        if seen is not None and wire.text(seen) == value:
            return
        # A replay sends anew: checked as a first send is (docs/security.md).
        verdict = sending.admitted(body, pools=self.pools)
        if verdict.outcome is poolaccess.Outcome.UNKNOWN:
            log.info("replay postponed: %s", verdict.message)
            return  # not marked: the next event or listing of this LongTask tries again
        refused = verdict.outcome is poolaccess.Outcome.REFUSED
        if refused:
            message = f"not replayed: {verdict.message}"
        else:
            message = await dispatch.replay(redis=self.redis, celery=self.celery, body=body)
        await self.kube.post_event(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            reason="PoolNotAllowed" if refused else "Replay",
            message=message,
            warning=refused,
        )
        await self.redis.set(marker, value, ex=ledger.KEY_TTL_SECONDS)


async def reconcile(
    *, redis: aioredis.Redis, celery: Celery, kube: kube.Kube, body: dict[str, Any], pools: poolaccess.Claims
) -> bool:
    """dispatch.reconcile, and the Warning Event of a task it failed for its pool
    (PoolNotAllowed); whether the task needs no more sending.

    A refusal is final, so one the watches show is read again first (the holder WorkerPool
    and the Namespace, two GETs, for refused tasks only): a selector that admits the
    namespace now, or a WorkerPool gone, leaves the task for the sweep to look at again.

    A spec the CRD's schema let through but the task cannot run with (limits the schema
    cannot state, such as an item's size in bytes) fails the task once, with a Warning
    Event InvalidSpec that names the field."""
    if (problem := invalid_spec(body)) is not None:
        unfinished = not phases.is_terminal(phases.parse((body.get("status") or {}).get("phase")))
        error = {"type": "InvalidSpec", "message": problem}
        if unfinished and await dispatch.fail_unsent(redis=redis, body=body, error=error):
            meta = body["metadata"]
            await kube.post_event(
                namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], reason="InvalidSpec",
                message=problem, warning=True,
            )  # fmt: skip
        return True
    verdict = sending.admitted(body, pools=pools)
    if verdict.outcome is poolaccess.Outcome.REFUSED and verdict.holder is not None:
        namespace = body["metadata"]["namespace"]
        verdict = poolaccess.confirmed(
            verdict,
            namespace=namespace,
            pool=verdict.holder.pool,
            live_pool=await kube.get_workerpool(namespace=verdict.holder.namespace, name=verdict.holder.name),
            live_namespace=await kube.get_namespace(name=namespace),
        )
    try:
        return await dispatch.reconcile(redis=redis, celery=celery, body=body, pools=pools, verdict=verdict)
    except dispatch.Refused as refused:
        meta = body["metadata"]
        await kube.post_event(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            reason="PoolNotAllowed",
            message=refused.verdict.message,
            warning=True,
        )
        return True


def invalid_spec(body: dict[str, Any]) -> str | None:
    """What is wrong with the LongTask's spec for longtask's own model, or None."""
    try:
        spec = models.LongTaskSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as exc:
        return "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else f"spec: {e['msg']}"
            for e in exc.errors()
        )
    errors = spec.batch_field_errors()
    return "; ".join(errors) if errors else None


def _settled(obj: dict[str, Any]) -> bool:
    """Finished, and nothing asked of it that on_event would act on (a replay)."""
    return phases.is_terminal(phases.parse((obj.get("status") or {}).get("phase"))) and not (
        obj["metadata"].get("annotations") or {}
    ).get(names.REPLAY_ANNOTATION)
