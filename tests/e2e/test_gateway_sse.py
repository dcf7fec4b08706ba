"""A task submitted through the gateway streams its progress over SSE.

Covers: POST answers 202 with name and links; the SSE stream carries queued, started,
every progress event and the terminal event, then ends; event ids are stream ids, in
order; a client that disconnects mid-stream and reconnects with Last-Event-ID receives
every remaining event exactly once, including the terminal one; GET and list with a
phase filter and continue tokens.
"""

from __future__ import annotations

import httpx
import pytest

from tests import helpers

pytestmark = pytest.mark.cluster


def _submit(client: httpx.Client, namespace: str, **spec: object) -> dict:
    response = client.post(f"/v1/namespaces/{namespace}/tasks", json={"spec": spec})
    assert response.status_code == 202, response.text
    return response.json()


def _ids(events: list[helpers.SseEvent]) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in (e.id or "").split("-")) for e in events]  # type: ignore[misc]


def test_progress_streams_to_completion(platform, namespace):
    with httpx.Client(base_url=platform.api_url) as client:
        created = _submit(client, namespace, task="demo.sleep", params={"seconds": 1, "steps": 5})
        assert created["phase"] == "Pending" and created["links"]["events"].endswith("/events")
        events = list(helpers.sse_events(client, created["links"]["events"]))
    kinds = [e.event for e in events]
    assert kinds[0] == "queued" and kinds[1] == "started"
    assert kinds[-1] == "succeeded"
    assert [e.data["progress"] for e in events if e.event == "progress"] == [20, 40, 60, 80, 100]
    assert _ids(events) == sorted(_ids(events)) and len(set(_ids(events))) == len(events)


def test_reconnect_with_last_event_id_resumes_exactly(platform, namespace):
    with httpx.Client(base_url=platform.api_url) as client:
        created = _submit(client, namespace, task="demo.sleep", params={"seconds": 2, "steps": 10})
        url = created["links"]["events"]
        first: list[helpers.SseEvent] = []
        for event in helpers.sse_events(client, url):
            first.append(event)
            if event.event == "progress" and event.data["progress"] >= 30:
                break  # the client goes away mid-stream
        rest = list(helpers.sse_events(client, url, last_event_id=first[-1].id))
        everything = list(helpers.sse_events(client, url))
    assert [e.id for e in first + rest] == [e.id for e in everything]
    assert rest[-1].event == "succeeded"
    assert sum(e.event == "succeeded" for e in first + rest) == 1


def test_get_and_list_with_phase_filter_and_pages(platform, namespace):
    base = f"/v1/namespaces/{namespace}/tasks"
    with httpx.Client(base_url=platform.api_url) as client:
        names = [_submit(client, namespace, task="demo.noop")["name"] for _ in range(3)]
        helpers.poll(
            lambda: all(client.get(f"{base}/{n}").json()["status"]["phase"] == "Succeeded" for n in names),
            timeout=30,
            what="all three Succeeded",
        )
        got = client.get(f"{base}/{names[0]}").json()
        assert got["spec"]["task"] == "demo.noop" and got["status"]["attempts"] == 1

        seen: list[str] = []
        pages, token = 0, None
        while pages == 0 or token:
            params = {"limit": 2, "phase": "Succeeded", **({"continue": token} if token else {})}
            page = client.get(base, params=params).json()
            seen += [item["name"] for item in page["items"]]
            token, pages = page.get("continue"), pages + 1
        assert sorted(seen) == sorted(names) and pages == 2
        assert client.get(base, params={"phase": "Running"}).json()["items"] == []
        missing = client.get(f"{base}/nope")
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]


def _open_streams(client: httpx.Client) -> float:
    metrics = client.get("/metrics").text
    return float(
        next(line.split()[1] for line in metrics.splitlines() if line.startswith("longtask_api_sse_streams "))
    )


def test_a_client_that_goes_away_releases_its_stream(platform, namespace):
    with httpx.Client(base_url=platform.api_url) as client:
        created = _submit(client, namespace, task="demo.sleep", params={"seconds": 30, "steps": 30})
        for event in helpers.sse_events(client, created["links"]["events"]):
            if event.event == "started":
                assert _open_streams(client) >= 1
                break  # leaving the with-block of the stream closes the connection mid-task
        helpers.poll(lambda: _open_streams(client) == 0, timeout=20, what="the gateway to drop the stream")
        client.post(f"/v1/namespaces/{namespace}/tasks/{created['name']}/cancel")
