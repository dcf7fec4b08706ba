"""The gateway's resource limits, on gateway processes of their own (real Redis, apiserver).

Covers: a caller holding LONGTASK_STREAMS_PER_CALLER open streams gets 429 (Problem,
Retry-After) for one more SSE stream, and a WebSocket refused with an error message (429)
and close code 1008; once one of its streams closes it may open another; another caller
is not affected. Tokens Kubernetes rejects never push an accepted token out of the cache
(its next request costs no TokenReview, counted by the apiserver's own metrics), and each
client address causes at most LONGTASK_AUTH_REVIEW_BURST TokenReviews for unknown tokens
(then 429 with Retry-After; a rejected token asked again costs none). The dead-letter
listing comes in pages (`limit`, `continue`) that together hold every entry once; a bad
`continue` is a 422; a replay of one finds its entry by the task's uid.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from longtask_contracts import ledger, names
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import helpers, lt

pytestmark = pytest.mark.cluster

STREAMS = 2


def _gateway(platform: platform_mod.Platform, *, auth: bool, env: dict[str, str]) -> Iterator[str]:
    port = procs.free_port()
    child = platform.start_api(port=port, auth=auth, extra_env=env)
    yield f"http://127.0.0.1:{port}"
    platform.stop_child(child)


@pytest.fixture
def limited_api(platform: platform_mod.Platform) -> Iterator[str]:
    """Auth off (every client of 127.0.0.1 is one caller), two streams per caller."""
    yield from _gateway(platform, auth=False, env={"LONGTASK_STREAMS_PER_CALLER": str(STREAMS)})


@pytest.fixture
def reviewing_api(platform: platform_mod.Platform) -> Iterator[str]:
    """Auth on: two cached tokens each way, kept long; four reviews of unknown tokens per address."""
    env = {
        "LONGTASK_AUTH_CACHE_SIZE": "2",
        "LONGTASK_AUTH_CACHE_SECONDS": "600",
        "LONGTASK_AUTH_REVIEW_BURST": "4",
        "LONGTASK_AUTH_REVIEW_RATE_PER_SECOND": "0.001",  # refills one review in ~17 minutes
    }
    yield from _gateway(platform, auth=True, env=env)


def _token_reviews(kubectl) -> float:
    """TokenReviews the apiserver has answered, from its own /metrics."""
    metrics = kubectl("get", "--raw", "/metrics").stdout
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("apiserver_request_total{") and 'resource="tokenreviews"' in line
    )


def test_open_streams_per_caller_are_limited(limited_api, kubectl, namespace):
    lt.create(kubectl, namespace, "waits", task="demo.sleep", pool=f"nobody-{uuid.uuid4().hex[:6]}")
    events = f"/v1/namespaces/{namespace}/events"
    with httpx.Client(base_url=limited_api, timeout=30) as client:
        streams = [client.stream("GET", events) for _ in range(STREAMS)]
        opened = [s.__enter__() for s in streams]
        try:
            assert [r.status_code for r in opened] == [200] * STREAMS
            with client.stream("GET", events) as over:  # a stream: a 200 would never end
                assert over.status_code == 429
                assert int(over.headers["Retry-After"]) >= 1
                problem = json.loads(over.read())
            assert problem["status"] == 429 and "LONGTASK_STREAMS_PER_CALLER" in problem["detail"]
            with client.stream("GET", f"/v1/namespaces/{namespace}/tasks/waits/events") as task_events:
                assert task_events.status_code == 429
            url = limited_api.replace("http://", "ws://") + f"/v1/namespaces/{namespace}/tasks/waits/ws"
            with connect(url) as ws:
                error = json.loads(ws.recv(timeout=30))
                assert error["event"] == "error" and error["data"]["status"] == 429
                with pytest.raises(ConnectionClosed):  # the server closes next
                    ws.recv(timeout=30)
                assert ws.close_code == 1008
        finally:
            streams[0].__exit__(None, None, None)
        # One stream closed: the gateway gives its slot back once it sees the client gone.
        helpers.poll(
            lambda: _opens(client, events), timeout=30, what="the gateway to free the closed stream's slot"
        )
        streams[1].__exit__(None, None, None)


def _opens(client: httpx.Client, url: str) -> bool:
    with client.stream("GET", url) as response:
        return response.status_code == 200


def _ask(client: httpx.Client, token: str) -> httpx.Response:
    return client.get("/v1/deadletters", headers={"Authorization": f"Bearer {token}"})


def test_bad_tokens_never_evict_a_good_one(reviewing_api, platform, kubectl):
    good = platform.dev_token()
    with httpx.Client(base_url=reviewing_api, timeout=30) as client:
        assert _ask(client, good).status_code == 200  # one review; the identity is cached
        bad = [f"bogus-{uuid.uuid4().hex}" for _ in range(3)]  # more than the cache holds
        assert [_ask(client, token).status_code for token in bad] == [401] * 3
        before = _token_reviews(kubectl)
        assert _ask(client, good).status_code == 200
        assert _token_reviews(kubectl) == before, "the good token was reviewed again: it had been evicted"


def test_unknown_tokens_cost_a_bounded_number_of_reviews(reviewing_api, kubectl):
    with httpx.Client(base_url=reviewing_api, timeout=30) as client:
        before = _token_reviews(kubectl)
        bad = [f"bogus-{uuid.uuid4().hex}" for _ in range(6)]
        answers = [_ask(client, token) for token in bad]
        # a burst of four reviews for this address: then 429, with no review
        assert [a.status_code for a in answers] == [401, 401, 401, 401, 429, 429]
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert answers[-1].json()["status"] == 429
        assert _token_reviews(kubectl) == before + 4
        assert _ask(client, bad[3]).status_code == 401  # rejected just before: cached apart, no review
        assert _token_reviews(kubectl) == before + 4


def test_dead_letters_are_listed_a_page_at_a_time(platform, kubectl, namespace, redis_client):
    """150 parked tasks: pages of about `limit`, each with a `continue` but the last,
    together every entry once."""
    count = 150
    pool = f"nobody-{uuid.uuid4().hex[:6]}"
    tasks = [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": f"dl-{i}", "namespace": namespace},
            "spec": {"task": "demo.sleep", "pool": pool},
        }
        for i in range(count)
    ]
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": tasks}))
    listed = json.loads(kubectl("get", "lt", "-n", namespace, "-o", "json").stdout)["items"]
    records = {
        o["metadata"]["uid"]: ledger.DeadLetter(
            namespace=namespace,
            name=o["metadata"]["name"],
            uid=o["metadata"]["uid"],
            task="demo.sleep",
            spec={},
            attempts=1,
            reason="RetriesExhausted",
        ).model_dump_json()
        for o in listed
    }
    redis_client.hset(names.DLQ, mapping=records)
    try:
        pages: list[dict] = []
        params = {"namespace": namespace, "limit": "20"}
        with httpx.Client(base_url=platform.api_url, timeout=30) as client:
            while True:
                answer = client.get("/v1/deadletters", params=params)
                assert answer.status_code == 200, answer.text
                pages.append(answer.json())
                if not pages[-1].get("continue"):
                    break
                params["continue"] = pages[-1]["continue"]
            assert client.get("/v1/deadletters", params={"continue": "not-a-cursor"}).status_code == 422
            replayed = client.post(f"/v1/deadletters/{namespace}/dl-7/replay")
            assert replayed.status_code == 202 and [e["name"] for e in replayed.json()["items"]] == ["dl-7"]
        names_seen = [e["name"] for page in pages for e in page["items"]]
        assert len(pages) > 2 and all(len(page["items"]) < count for page in pages)
        assert sorted(names_seen) == sorted(f"dl-{i}" for i in range(count))
    finally:
        redis_client.hdel(names.DLQ, *records)
