"""Gateways stopped and SIGKILLed mid-stream: no client loses or repeats an event.

Two gateway processes behind one address (tests/lbproxy.py, as a Service puts replicas), 50
tasks (demo.sleep, progress every 0.25 s) plus a batch, each followed from its creation by an
SSE client (sseclient.follow, what `longtask watch` uses), five of them also by a WebSocket
client (`?after=` its last id), and the namespace followed by one namespace-stream client.
The tasks wait in their queue until every client is connected; workers then run them. While
(nearly) every task's client is mid-stream, the gateway carrying the most streams is SIGKILLed and
started again; then the other one, by now carrying nearly every stream, is stopped (SIGTERM,
a rolling update: it cuts its streams after a grace period).

Covers: every client of a plain task ends with exactly its task's Redis event stream (ids,
in order, each once, the terminal event last); the batch's client gets each id at most once,
in order, every event but the counts-only ones, and the batch's last counts-only event (the
gateway paces those, merging a watcher's held ones into the latest id: batchpace.py); the
WebSocket clients the same ids as the SSE ones; the namespace stream's client gets every
event of every task once, in its task's order (the batch's counts paced likewise); the
clients of each killed or stopped gateway resumed on the other.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from longtask_cli import sseclient
from longtask_contracts import events, names
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import gateways as gateways_mod
from tests import lbproxy, lt, pools
from tests.drills import batches

pytestmark = pytest.mark.cluster

TASKS = 50
WS_CLIENTS = 5
BATCH_ITEMS = 40
FINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Seen:
    """What one client received, and how often its stream was interrupted."""

    ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    drops: int = 0
    error: str = ""

    def add(self, entry_id: str | None, kind: str, data: dict[str, Any]) -> None:
        self.ids.append(entry_id or "")
        self.kinds.append(kind)
        self.data.append(data)


@pytest.fixture
def gateways(platform: platform_mod.Platform) -> Iterator[gateways_mod.Gateways]:
    gws = gateways_mod.Gateways(platform).start_all()
    yield gws
    gws.stop()


def _follow_task(api: str, path: str, seen: Seen) -> None:
    with httpx.Client(base_url=api) as client:

        def dropped(exc: Exception, last_id: str | None) -> None:
            seen.drops += 1

        try:
            for event in sseclient.follow(client, path, on_drop=dropped):
                seen.add(event.id, event.event, event.data)
        except Exception as exc:  # reported by the test, with the client's name
            seen.error = repr(exc)


def _follow_ws(api: str, path: str, seen: Seen) -> None:
    base = api.replace("http://", "ws://") + path
    tries = 0
    while tries < 20:
        url = base + (f"?after={seen.ids[-1]}" if seen.ids else "")
        try:
            with connect(url, open_timeout=10) as ws:
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message.get("event") in ("ping", "pong"):
                        continue
                    tries = 0
                    seen.add(message.get("id"), message["event"], message.get("data") or {})
                    if message["event"] in FINAL:
                        return
        except (ConnectionClosed, OSError, TimeoutError) as exc:
            seen.drops += 1
            tries += 1
            seen.error = repr(exc)
            time.sleep(0.25)
    seen.error = f"gave up: {seen.error}"


def _follow_namespace(api: str, path: str, seen: Seen, *, done: threading.Event) -> None:
    """The namespace stream, from its start ('0'), resumed with Last-Event-ID after a drop,
    until `done` (it never ends by itself)."""
    with httpx.Client(base_url=api) as client:
        while not done.is_set():
            try:
                last = seen.ids[-1] if seen.ids else "0"
                for event in sseclient.events(client, path, last_event_id=last, timeout=5):
                    seen.add(event.id, event.event, event.data)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                if not isinstance(exc, httpx.ReadTimeout):
                    seen.drops += 1
                time.sleep(0.1)


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _counts_only(kind: str, data: dict[str, Any]) -> bool:
    return kind == events.Kind.PROGRESS.value and data.get("items") is not None


def _check_plain(who: str, seen: Seen, stream: list[tuple[str, events.TaskEvent]]) -> None:
    assert not seen.error or (seen.kinds[-1:] and seen.kinds[-1] in FINAL), f"{who}: {seen.error}"
    assert seen.ids == [i for i, _ in stream], (
        f"{who}: got {len(seen.ids)} ids {seen.kinds}, the stream has {[e.kind.value for _, e in stream]}"
    )


def _check_paced(who: str, seen: Seen, stream: list[tuple[str, events.TaskEvent]]) -> None:
    """A batch: ids in order, each once, all of the stream's; every event but the counts-only
    ones, and the last counts-only one, with the counts the stream has under that id."""
    by_id = dict(stream)
    assert seen.ids == sorted(set(seen.ids), key=_key), f"{who}: ids repeated or out of order"
    assert set(seen.ids) <= set(by_id), f"{who}: ids not in the stream"
    counts = [i for i, e in stream if e.kind is events.Kind.PROGRESS and e.items is not None]
    others = [i for i, e in stream if i not in counts]
    assert [i for i in seen.ids if i not in counts] == others, f"{who}: {seen.kinds}"
    assert counts and counts[-1] in seen.ids, f"{who}: the last counts-only event is missing"
    for entry_id, kind, data in zip(seen.ids, seen.kinds, seen.data, strict=True):
        if _counts_only(kind, data):
            sent = by_id[entry_id].items
            assert sent is not None and data["items"]["succeeded"] == sent["succeeded"], (who, entry_id)


def _wait(check: Any, *, timeout: float, what: str) -> None:
    procs.wait_until(check, timeout=timeout, what=what, interval=0.05)


def test_two_gateways_killed_mid_stream_lose_no_event(platform, kubectl, namespace, redis_client, gateways):
    pool = pools.unique_pool()
    base = f"/v1/namespaces/{namespace}"
    names_ = pools.create_many(kubectl, namespace, "gk", TASKS, task="demo.sleep", pool=pool,
                               params={"seconds": 6, "steps": 24})  # fmt: skip
    batch_uid = batches.create(kubectl, namespace, "gk-batch", total=BATCH_ITEMS, seconds=0.1, pool=pool)
    everything = [*names_, "gk-batch"]
    sse = {name: Seen() for name in everything}
    ws = {name: Seen() for name in names_[-WS_CLIENTS:]}  # the last to run: mid-stream at the kills
    spaced = Seen()
    done = threading.Event()
    threads = len(sse) + len(ws) + 1
    with lbproxy.Balancer(gateways.backends) as proxy, futures.ThreadPoolExecutor(threads) as pool_:
        runs = [pool_.submit(_follow_namespace, proxy.url, f"{base}/events", spaced, done=done)]
        runs += [pool_.submit(_follow_task, proxy.url, f"{base}/tasks/{n}/events", s) for n, s in sse.items()]
        runs += [pool_.submit(_follow_ws, proxy.url, f"{base}/tasks/{n}/ws", s) for n, s in ws.items()]
        clients = 1 + len(sse) + len(ws)
        _wait(
            lambda: all(s.kinds for s in [*sse.values(), *ws.values()]),
            timeout=120,
            what="a first event each",
        )
        _wait(
            lambda: sum(proxy.open_connections().values()) >= clients,
            timeout=60,
            what="every client connected",
        )
        workers = [platform.start_worker(pool=pool, concurrency=5) for _ in range(2)]
        try:
            running = lambda n: sum(s.kinds.count("progress") >= n for s in sse.values())  # noqa: E731
            _wait(lambda: running(1) >= 3, timeout=120, what="three tasks into their progress")
            # A crash: the replica carrying the most streams is SIGKILLed while (nearly) every task's
            # client is mid-stream; its clients resume on the other one.
            unfinished = [s for s in sse.values() if s.kinds[-1] not in FINAL]
            first = max(proxy.open_connections().items(), key=lambda kv: kv[1])[0][1]
            gateways.kill(first)
            killed_at = time.monotonic()
            gateways.start(first)
            killed = sum(s.drops > 0 for s in sse.values())
            # A rolling update: the other replica, by now carrying nearly every stream, stops
            # (SIGTERM) and its clients resume on the first one, back by now.
            second = next(p for p in gateways.ports if p != first)
            stopped = [s for s in sse.values() if s.kinds[-1] not in FINAL]
            before_stop = {id(s): s.drops for s in stopped}
            gateways.stop_one(second)
            for run in runs[1:]:
                run.result(timeout=300)
            elapsed = time.monotonic() - killed_at
        finally:
            for worker in workers:
                platform.stop_child(worker)
            done.set()
        runs[0].result(timeout=30)

    streams = {
        name: [(i, events.TaskEvent.decode(f)) for i, f in redis_client.xrange(names.events_stream(uid))]
        for name, uid in {n: lt.get(kubectl, namespace, n)["metadata"]["uid"] for n in everything}.items()
    }
    assert streams["gk-batch"] and lt.get(kubectl, namespace, "gk-batch")["metadata"]["uid"] == batch_uid
    for name in names_:
        _check_plain(f"SSE {name}", sse[name], streams[name])
        assert sse[name].kinds[-1] == "succeeded"
    for name, seen in ws.items():
        _check_plain(f"WebSocket {name}", seen, streams[name])
    _check_paced("SSE gk-batch", sse["gk-batch"], streams["gk-batch"])
    assert sse["gk-batch"].kinds[-1] == "succeeded"

    # The namespace stream: every event of each task, in its task's order, once.
    assert spaced.ids == sorted(set(spaced.ids), key=_key), "namespace stream: ids repeated or out of order"
    for name in everything:
        got = [(k, d.get("at")) for k, d in zip(spaced.kinds, spaced.data, strict=True) if d["name"] == name]
        want = [(e.kind.value, e.at) for _, e in streams[name]]
        if name == "gk-batch":
            counts = [w for w, (_, e) in zip(want, streams[name], strict=True) if e.items is not None]
            assert [g for g in got if g not in counts] == [w for w in want if w not in counts], name
            assert set(got) <= set(want) and counts[-1] in got, name
        else:
            assert got == want, f"namespace stream, {name}: {got} != {want}"

    resumed_after_stop = sum(s.drops > before_stop[id(s)] for s in stopped)
    print(
        f"\nSIGKILL: {len(unfinished)} SSE clients mid-stream, {killed} of them dropped and resumed; "
        f"SIGTERM: {len(stopped)} mid-stream, {resumed_after_stop} resumed; "
        f"{sum(s.drops for s in sse.values())} SSE drops in all, {sum(s.drops for s in ws.values())} "
        f"WebSocket, namespace stream {spaced.drops}; {elapsed:.1f} s from the SIGKILL to the last end"
    )
    assert len(unfinished) >= 40 and killed >= len(sse) // 4
    assert resumed_after_stop >= len(stopped) // 2 and any(s.drops for s in ws.values())
