"""The bench's clients of the platform: LongTask creates (direct or through the gateway), the
task event log, CR phase watches and LIST timings, counting the bench's own apiserver reads.

Every event comes from the shared status stream (longtask:status): each worker and operator
event is written there and to the task's own stream longtask:events:<uid> in one MULTI
(ledger.queue_publish), with the same `at`, so one blocking XREAD follows every task at
the cost of none. CR phases come from one LIST plus a WATCH, never from polling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from kubernetes_asyncio import client

from longtask_contracts import events, names
from longtask_runtime import kube as runtimekube

Kind = events.Kind
ENDED_BADLY = {Kind.FAILED, Kind.CANCELLED, Kind.RETRYING}
Spec = dict[str, Any]


@dataclass
class Created:
    """One LongTask the bench created, and the wall-clock times around the create call."""

    name: str
    uid: str
    called: float
    returned: float


Create = Callable[[str, Spec], Awaitable[Created]]


class Clients:
    """A Kubernetes client, an HTTP client of the gateway and Redis, for one bench run.

    `own` counts the apiserver requests the bench makes besides its creates (LISTs and
    WATCHes), keyed like probes.api_requests, so they can be subtracted from the server's
    counters.
    """

    def __init__(
        self, api: client.ApiClient, http: aiohttp.ClientSession, gateway: str, r: aioredis.Redis
    ) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.http = http  # aiohttp, as kubernetes_asyncio uses: the same client cost on both paths
        self.gateway = gateway
        self.redis = r
        self.own: collections.Counter[str] = collections.Counter()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, kubeconfig: str, gateway: str, redis_url: str) -> AsyncIterator[Clients]:
        cfg = client.Configuration()
        cfg.connection_pool_maxsize = 256  # never the limit: the bench bounds its concurrency itself
        async with (
            await runtimekube.login(kubeconfig=kubeconfig, configuration=cfg) as api,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=60)
            ) as http,
        ):
            r = aioredis.Redis.from_url(redis_url)
            try:
                yield cls(api, http, gateway, r)
            finally:
                await r.aclose()

    # -- creates -------------------------------------------------------------------------
    def creator(self, path: str, namespace: str, labels: dict[str, str] | None = None) -> Create:
        """Create one LongTask by `path`: "direct" (create_namespaced_custom_object, what
        kubectl does) or "gateway" (POST /v1/namespaces/{ns}/tasks)."""

        async def direct(name: str, spec: Spec) -> Created:
            body = {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "metadata": {"name": name, "labels": labels or {}},
                "spec": spec,
            }
            called = time.time()
            obj = await self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, body
            )
            return Created(name, obj["metadata"]["uid"], called, time.time())

        async def gateway(name: str, spec: Spec) -> Created:
            body = {"name": name, "labels": labels or {}, "spec": spec}
            called = time.time()
            async with self.http.post(f"{self.gateway}/v1/namespaces/{namespace}/tasks", json=body) as reply:
                answer = await reply.read()
            returned = time.time()
            if reply.status != 202:
                raise RuntimeError(f"gateway answered {reply.status}: {answer[:300]!r}")
            return Created(name, json.loads(answer)["uid"], called, returned)

        return {"direct": direct, "gateway": gateway}[path]

    @staticmethod
    async def create_many(
        create: Create, specs: Sequence[tuple[str, Spec]], concurrency: int
    ) -> list[Created]:
        """Create every (name, spec) with at most `concurrency` calls in flight, in order."""
        result: list[Created | None] = [None] * len(specs)
        todo = iter(enumerate(specs))

        async def one_at_a_time() -> None:
            for i, (name, spec) in todo:
                result[i] = await create(name, spec)

        await asyncio.gather(*(one_at_a_time() for _ in range(min(concurrency, len(specs)))))
        return [made for made in result if made is not None]

    # -- LongTask phases -------------------------------------------------------------------
    async def wait_phases(
        self, namespace: str, want: dict[str, str], *, within: float, label_selector: str | None = None
    ) -> float:
        """Wait until each LongTask named in `want` has its phase; returns when that was seen.

        One paginated LIST, then a WATCH from its resourceVersion (both counted in `own`).
        """
        phase: dict[str, str | None] = {}
        matched = 0

        def see(obj: dict[str, Any], deleted: bool = False) -> None:
            nonlocal matched
            name = obj["metadata"]["name"]
            if name not in want:
                return
            new = None if deleted else (obj.get("status") or {}).get("phase")
            matched += (new == want[name]) - (phase.get(name) == want[name])
            phase[name] = new

        rv, token = "", None
        selector: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        while True:
            page = await self.custom.list_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL,
                limit=500, **selector, **({"_continue": token} if token else {}),
            )  # fmt: skip
            self.own["LIST longtasks"] += 1
            for obj in page["items"]:
                see(obj)
            rv, token = page["metadata"]["resourceVersion"], page["metadata"].get("continue")
            if not token:
                break
        deadline = time.monotonic() + within
        while matched < len(want):
            left = deadline - time.monotonic()
            if left <= 0:
                wrong = [(n, phase.get(n)) for n in want if phase.get(n) != want[n]][:5]
                raise TimeoutError(f"{len(want) - matched} LongTasks in {namespace} not as wanted: {wrong}")
            rv = await self._watch(namespace, rv, label_selector, left, see, lambda: matched >= len(want))
        return time.time()

    async def _watch(
        self,
        namespace: str,
        rv: str,
        label_selector: str | None,
        seconds: float,
        see: Callable[[dict[str, Any], bool], None],
        done: Callable[[], bool],
    ) -> str:
        """One WATCH from `rv` until done() or `seconds`; returns the last resourceVersion."""
        selector: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        resp = await self.custom.list_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL,
            watch=True, resource_version=rv, timeout_seconds=max(1, math.ceil(seconds)),
            _preload_content=False, **selector,
        )  # fmt: skip
        self.own["WATCH longtasks"] += 1
        try:
            if resp.status != 200:
                raise RuntimeError(f"WATCH longtasks answered {resp.status}: {(await resp.read())[:300]!r}")
            async with asyncio.timeout(seconds + 5):
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch of {namespace} failed: {event['object']}")
                    rv = event["object"]["metadata"]["resourceVersion"]
                    see(event["object"], event["type"] == "DELETED")
                    if done():
                        break
        except TimeoutError:
            pass
        finally:
            resp.close()
        return rv

    async def list_cost(self, *, limit: int | None = None) -> ListCost:
        """Time and bytes of LISTing every LongTask in the cluster (in pages of `limit`)."""
        cost, token = ListCost(limit=limit), None
        while True:
            kwargs: dict[str, Any] = {"limit": limit} if limit else {}
            if token:
                kwargs["_continue"] = token
            began = time.monotonic()
            resp = await self.custom.list_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, _preload_content=False, **kwargs
            )
            body = await resp.read()
            cost.seconds += time.monotonic() - began
            self.own["LIST longtasks"] += 1
            if resp.status != 200:
                raise RuntimeError(f"LIST longtasks answered {resp.status}: {body[:300]!r}")
            page = json.loads(body)
            cost.pages += 1
            cost.bytes += len(body)
            cost.items += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return cost


@dataclass
class ListCost:
    limit: int | None
    seconds: float = 0.0  # request sent -> whole body read, summed over pages
    bytes: int = 0
    pages: int = 0
    items: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of the apiserver and etcd


@dataclass
class _Waiter:
    kind: Kind
    pending: set[str]
    done: asyncio.Future[None]


class EventLog:
    """Every task event since the bench began, from the status stream: per uid, the `at`
    of the first event of each kind. run() follows the stream; wait() waits for kinds."""

    def __init__(self, r: aioredis.Redis) -> None:
        self.redis = r
        self.at: dict[str, dict[Kind, float]] = collections.defaultdict(dict)
        self._waiters: list[_Waiter] = []
        self._error: Exception | None = None

    async def run(self) -> None:
        last: Any = "0"
        try:
            while True:
                reply: Any = await self.redis.xread({names.STATUS_STREAM: last}, count=2000, block=1000)
                for _, entries in reply or []:
                    for _, fields in entries:
                        self._add(events.TaskEvent.decode(fields))
                    last = entries[-1][0]
        except Exception as exc:  # every wait fails with it, rather than time out
            self._error = exc
            for waiter in list(self._waiters):
                self._end(waiter, exc)
            raise

    def _add(self, event: events.TaskEvent) -> None:
        seen = self.at[event.uid]
        if event.kind in seen:
            return
        seen[event.kind] = event.at
        for waiter in list(self._waiters):
            if event.uid not in waiter.pending:
                continue
            if event.kind in ENDED_BADLY and waiter.kind not in ENDED_BADLY:
                self._end(waiter, RuntimeError(f"LongTask {event.uid} ended {event.kind}: {event.message}"))
            elif event.kind == waiter.kind:
                waiter.pending.discard(event.uid)
                if not waiter.pending:
                    self._end(waiter, None)

    def _end(self, waiter: _Waiter, error: Exception | None) -> None:
        self._waiters.remove(waiter)
        if not waiter.done.done():
            if error is None:
                waiter.done.set_result(None)
            else:
                waiter.done.set_exception(error)

    def first(self, uid: str, kind: Kind) -> float:
        """`at` of the task's first event of `kind`, or NaN."""
        return self.at.get(uid, {}).get(kind, math.nan)

    def last(self, uids: Sequence[str], kind: Kind) -> float:
        """The latest first-`kind` `at` over the tasks (NaN if none had it)."""
        ats = [a for uid in uids if not math.isnan(a := self.first(uid, kind))]
        return max(ats) if ats else math.nan

    async def wait(self, uids: Sequence[str], kind: Kind, *, within: float) -> None:
        """Until every task had an event of `kind`; raises if one failed or timed out."""
        if self._error is not None:
            raise RuntimeError("the event log stopped following the status stream") from self._error
        for uid in uids:
            if bad := self.at.get(uid, {}).keys() & ENDED_BADLY:
                raise RuntimeError(f"LongTask {uid} ended {sorted(bad)}")
        pending = {uid for uid in uids if kind not in self.at.get(uid, {})}
        if not pending:
            return
        waiter = _Waiter(kind, pending, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), within)
        except TimeoutError:
            stuck = {uid: sorted(self.at.get(uid, {})) for uid in sorted(waiter.pending)[:5]}
            raise TimeoutError(
                f"{len(waiter.pending)} of {len(uids)} LongTasks had no `{kind}` event within"
                f" {within:.0f} s; events of some: {stuck}"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
