"""How sseclient.follow() resumes a task's stream (what `longtask watch` relies on).

Covers: the back-off doubles from 0.25 s up to 5 s with jitter, never below a Retry-After
(capped at 30 s); a 503 with Retry-After, a refused connection, a stream cut mid-event and a
stream the gateway ended before the final event are each resumed with the last id sent as
Last-Event-ID, every event yielded once; a 404 is raised at once; StreamLost only once the
patience has passed without an event, and any event starts the patience again, as does a stream
that stayed open a while (a quiet task's stream, then a drop, is retried); `last_event_id`
is where the first request starts (`longtask logs --follow`). The server
is a scripted httpx transport (the gateway's side is covered by tests/e2e and tests/drills).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from longtask_cli import sseclient

Answer = Callable[[httpx.Request], httpx.Response]


def _frames(*events: tuple[str, str]) -> bytes:
    return b"".join(f'id: {i}\nevent: {kind}\ndata: {{"n": "{i}"}}\n\n'.encode() for i, kind in events)


def _stream(body: bytes, *, cut: bool = False, quiet: Callable[[], None] | None = None) -> httpx.Response:
    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield body
            if quiet is not None:
                quiet()  # the stream stays open a long while with nothing but keep-alives
            if cut:
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())


def _server(
    answers: list[Callable[[httpx.Request], httpx.Response]],
) -> tuple[httpx.Client, list[str | None]]:
    asked: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        return answers.pop(0)(request)

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gw"), asked


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("failures", "retry_after", "low", "high"),
    [
        (1, None, 0.125, 0.25),
        (2, None, 0.25, 0.5),
        (5, None, 2.0, 4.0),
        (6, None, 2.5, 5.0),
        (40, None, 2.5, 5.0),
        (1, 3.0, 3.0, 3.0),  # Retry-After is a floor
        (6, 1.0, 2.5, 5.0),  # the back-off is longer
        (1, 600.0, 30.0, 30.0),  # capped
    ],
)
def test_delay(failures: int, retry_after: float | None, low: float, high: float) -> None:
    for _ in range(50):
        assert low <= sseclient.delay(failures, retry_after=retry_after) <= high


def test_every_drop_is_resumed_after_the_last_id_and_nothing_is_repeated() -> None:
    client, asked = _server(
        [
            lambda r: _stream(
                _frames(("1-0", "queued"), ("2-0", "started")) + b"id: 3-0\nevent: pro", cut=True
            ),
            _refused,
            lambda r: httpx.Response(503, headers={"retry-after": "2"}, json={"detail": "starting"}),
            lambda r: _stream(_frames(("3-0", "progress"))),  # ended early (a gateway shutting down)
            lambda r: _stream(_frames(("4-0", "progress"), ("5-0", "succeeded"))),
        ]
    )
    slept: list[float] = []
    drops: list[str | None] = []
    got = list(
        sseclient.follow(client, "/events", sleep=slept.append, on_drop=lambda exc, last: drops.append(last))
    )
    assert [e.id for e in got] == ["1-0", "2-0", "3-0", "4-0", "5-0"]
    assert asked == [None, "2-0", "2-0", "2-0", "3-0"]
    assert drops == ["2-0", "2-0", "2-0", "3-0"]
    assert slept[2] >= 2.0  # the 503's Retry-After
    assert slept[3] <= 0.25  # an event came: the back-off starts over


def test_other_errors_are_raised_at_once() -> None:
    client, _ = _server([lambda r: httpx.Response(404, json={"detail": "not found"})])
    with pytest.raises(httpx.HTTPStatusError):
        list(sseclient.follow(client, "/events", sleep=lambda s: None))


def test_stream_lost_only_after_the_patience_without_an_event() -> None:
    now = [0.0]
    answers: list[Answer] = [
        lambda r: _stream(_frames(("1-0", "queued")), cut=True),
        *[_refused] * 100,
    ]
    client, asked = _server(answers)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    got: list[str | None] = []

    def run() -> None:
        for event in sseclient.follow(client, "/events", patience=60, sleep=sleep, clock=lambda: now[0]):
            got.append(event.id)

    with pytest.raises(sseclient.StreamLost, match="last event 1-0"):
        run()
    assert got == ["1-0"]
    assert 60 <= now[0] < 70 and 12 <= len(asked) <= 30, (now[0], len(asked))


def test_following_from_an_id_sends_it_first() -> None:
    client, asked = _server([lambda r: _stream(_frames(("7-0", "succeeded")))])
    got = list(sseclient.follow(client, "/events", last_event_id="6-0", sleep=lambda s: None))
    assert [e.id for e in got] == ["7-0"] and asked == ["6-0"]


def test_a_long_quiet_stream_that_drops_is_retried_not_lost() -> None:
    now = [0.0]

    def quiet() -> None:
        now[0] += 600

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client, asked = _server(
        [
            lambda r: _stream(_frames(("1-0", "queued")), cut=True, quiet=quiet),  # 10 min quiet, then a drop
            _refused,
            lambda r: _stream(b": ping\n\n", cut=True, quiet=quiet),  # again quiet, no event, then a drop
            lambda r: _stream(_frames(("2-0", "succeeded"))),
        ]
    )
    got = list(sseclient.follow(client, "/events", patience=60, sleep=sleep, clock=lambda: now[0]))
    assert [e.id for e in got] == ["1-0", "2-0"] and asked == [None, "1-0", "1-0", "1-0"]
