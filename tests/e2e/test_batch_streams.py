"""A batch's events over SSE and WebSocket, on real batches (gateway, operator and worker processes).

Covers: a 2,000-item demo.noop batch watched live over SSE and over a WebSocket: each watcher
gets far fewer events than items, both the same ids in the same order, every one after the
first carrying the batch's counts, the last the terminal one with the final counts (2,000
succeeded, as in the status); a client that reconnects with the id of a half-read stream
gets exactly the rest. A batch whose items fail as they go (the workers publish every report
with failures at once): a live watcher gets at most one counts event per interval plus one
per 100 failed items (docs/batch-events.md), the failed items the events name are each named
once, and the last event's counts match the status; a gateway with pacing off
(LONGTASK_BATCH_EVENT_SECONDS=0) sends the same stream unmerged, many more events, while a
paced client catching up on it all gets a handful; the namespace's stream (the page's) keeps
the same bound and ends with the same final counts.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from longtask_api import fanout
from longtask_contracts import names
from longtask_dev import procs
from tests import helpers, lt, pools

pytestmark = pytest.mark.cluster
INTERVAL = 0.5  # LONGTASK_BATCH_EVENT_SECONDS, the default


@pytest.fixture
def pool(platform) -> Iterator[str]:
    name = pools.unique_pool()
    worker = platform.start_worker(pool=name, concurrency=2)
    yield name
    platform.stop_child(worker)


def _create(api: str, namespace: str, name: str, **spec: object) -> None:
    response = httpx.post(
        f"{api}/v1/namespaces/{namespace}/tasks", json={"name": name, "spec": spec}, timeout=60
    )
    assert response.status_code == 202, response.text


def _sse(api: str, namespace: str, name: str, last_event_id: str | None = None) -> list[helpers.SseEvent]:
    with httpx.Client(base_url=api) as client:
        url = f"/v1/namespaces/{namespace}/tasks/{name}/events"
        return list(helpers.sse_events(client, url, last_event_id=last_event_id, timeout=120))


def _ws(api: str, namespace: str, name: str) -> list[dict]:
    url = api.replace("http://", "ws://") + f"/v1/namespaces/{namespace}/tasks/{name}/ws"
    got: list[dict] = []
    with connect(url) as ws:
        try:
            while True:
                message = json.loads(ws.recv(timeout=120))
                if message["event"] not in ("ping", "pong"):
                    got.append(message)
        except ConnectionClosed:
            return got


def _timed_sse(api: str, namespace: str, name: str) -> tuple[list[helpers.SseEvent], list[float]]:
    """The stream's events and when (monotonic) each arrived."""
    events: list[helpers.SseEvent] = []
    times: list[float] = []
    with httpx.Client(base_url=api) as client:
        for event in helpers.sse_events(
            client, f"/v1/namespaces/{namespace}/tasks/{name}/events", timeout=120
        ):
            events.append(event)
            times.append(time.monotonic())
    return events, times


def _upload(redis_client, count: int) -> dict[str, object]:
    """spec.itemsFrom for `count` items stored as the gateway stores an upload (more than
    fit in the object)."""
    upload = uuid.uuid4().hex
    key = names.upload(upload)
    redis_client.hset(key, mapping={str(i): "{}" for i in range(count)})  # demo.noop takes no keys
    redis_client.expire(key, 3600)
    return {"upload": upload, "count": count}


def _namespace_sse(api: str, namespace: str, name: str) -> list[helpers.SseEvent]:
    """Task `name`'s events on the namespace's stream (the page's), up to its terminal one."""
    got: list[helpers.SseEvent] = []
    with httpx.Client(base_url=api) as client:
        for event in helpers.sse_events(client, f"/v1/namespaces/{namespace}/events", timeout=120):
            if event.data.get("name") == name:
                got.append(event)
                if event.event in ("succeeded", "failed", "cancelled"):
                    return got
    return got


def test_a_2000_item_batch_over_sse_and_websocket(platform, kubectl, namespace, pool, redis_client):
    api = platform.api_url
    with concurrent.futures.ThreadPoolExecutor(2) as pool_:
        _create(api, namespace, "noops", task="demo.noop", pool=pool, itemsFrom=_upload(redis_client, 2000))
        sse = pool_.submit(_sse, api, namespace, "noops")
        ws = pool_.submit(_ws, api, namespace, "noops")
        events, messages = sse.result(), ws.result()
    status = lt.wait_phase(kubectl, namespace, "noops", "Succeeded")
    print(f"2000 items: {len(events)} SSE events, {len(messages)} WebSocket messages")
    assert len(events) <= 100, [e.event for e in events]
    assert [e.id for e in events] == [m["id"] for m in messages]
    assert [e.event for e in events] == [m["event"] for m in messages]
    assert events[-1].event == "succeeded"
    last = events[-1].data["items"]
    assert last["total"] == last["succeeded"] == 2000 and last["failed"] == 0
    assert messages[-1]["data"]["items"] == last
    assert status["items"]["succeeded"] == 2000
    assert all("items" in e.data for e in events if e.event == "progress")

    # Reconnecting half-way with the last id gets exactly the rest (paced again: merged, in order).
    half = events[len(events) // 2]
    rest = _sse(api, namespace, "noops", last_event_id=half.id)
    assert rest[-1].id == events[-1].id and rest[-1].data["items"] == last
    assert all(fanout.id_key(e.id or "") > fanout.id_key(half.id or "") for e in rest)


def test_failing_items_are_paced_per_watcher(platform, kubectl, namespace, pool):
    api = platform.api_url
    port = procs.free_port()
    unpaced = platform.start_api(port=port, extra_env={"LONGTASK_BATCH_EVENT_SECONDS": "0"})
    try:
        # Every other item fails at once (a negative sleep), the others take 20 ms: each report
        # of a chunk has failures, and the workers publish each of those at once.
        items = [{"seconds": 0.02, "steps": 1} if i % 2 else {"seconds": -1} for i in range(1000)]
        with concurrent.futures.ThreadPoolExecutor(2) as pool_:
            in_namespace = pool_.submit(_namespace_sse, api, namespace, "flaky")
            _create(
                api, namespace, "flaky", task="demo.sleep", pool=pool, items=items, retry={"maxRetries": 0}
            )
            live = pool_.submit(_timed_sse, api, namespace, "flaky")
            events, times = live.result()
            namespace_events = in_namespace.result()
        status = lt.wait_phase(kubectl, namespace, "flaky", "Failed")
        raw = _sse(f"http://127.0.0.1:{port}", namespace, "flaky")
        caught_up = _sse(api, namespace, "flaky")
    finally:
        platform.stop_child(unpaced)

    counts = [e for e in events if e.event == "progress" and "items" in e.data]
    raw_counts = [e for e in raw if e.event == "progress" and "items" in e.data]
    print(
        f"1000 items, 500 failing: {len(counts)} paced counts events live, {len(raw_counts)} unpaced, "
        f"{len(caught_up)} events caught up, {len(namespace_events)} on the namespace stream"
    )
    # The documented bound: one counts event per interval, plus one per 100 failed items.
    span = times[-1] - times[0]
    assert len(counts) <= span / INTERVAL + 500 / 100 + 2, (len(counts), span)
    assert len(counts) < len(raw_counts)
    assert len(caught_up) <= 10
    # The namespace's stream (nothing else runs in it): the same bound, the same last event.
    namespace_counts = [e for e in namespace_events if e.event == "progress" and "items" in e.data]
    assert len(namespace_counts) <= span / INTERVAL + 500 / 100 + 4, (len(namespace_counts), span)
    assert (
        namespace_events[-1].id is not None and namespace_events[-1].data["items"] == events[-1].data["items"]
    )
    named = [f["index"] for e in events for f in e.data.get("failed_items") or []]
    assert len(named) == len(set(named)) and all(i % 2 == 0 for i in named)
    assert [f["index"] for e in caught_up for f in e.data.get("failed_items") or []] == named
    assert [f["index"] for e in raw for f in e.data.get("failed_items") or []] == named  # none lost
    last = events[-1]
    assert last.event == "failed" and last.data["items"]["failed"] == 500 == status["items"]["failed"]
    assert last.data["items"]["succeeded"] == 500
    assert raw[-1].id == events[-1].id == caught_up[-1].id
