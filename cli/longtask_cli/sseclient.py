"""Server-Sent Events from the gateway, read with httpx-sse, for `longtask watch` and the tests.

events() reads one stream; follow() follows a task to its end across dropped connections
and restarting gateways (Last-Event-ID, with back-off). Printing is display.py's.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx_sse

# Events after which a task's stream ends: its terminal events, and `status` (sent instead
# of the events once they have been cleaned up).
FINAL_EVENTS = frozenset({"succeeded", "failed", "cancelled", "status"})
# Answers worth another try: a proxy or Service with no ready gateway (502, 503, 504), a
# gateway that cannot reach Kubernetes or Redis (503), or this caller's open streams at the
# limit of the one replica left (429).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FIRST_DELAY = 0.25  # seconds before the first reconnect; doubled each time, up to MAX_DELAY
MAX_DELAY = 5.0
RETRY_AFTER_MAX = 30.0  # the longest Retry-After honoured
# How long follow() keeps trying without getting an event through: a gateway replica that
# restarts, or a Service that takes a few seconds to drop a dead endpoint, fits well within.
PATIENCE_SECONDS = 60.0
# A stream that stayed open this long before it dropped was not a failed try (a quiet task's
# stream only carries keep-alives): the back-off and the patience start over.
STEADY_SECONDS = 10.0


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


def events(
    client: httpx.Client,
    url: str,
    *,
    last_event_id: str | None = None,
    timeout: float = 60,
    on_open: Callable[[], Any] | None = None,
) -> Iterator[Event]:
    """Yield events from `url` until the server ends the stream; comments (pings) are skipped.

    Raises httpx.HTTPStatusError for a non-2xx answer, after reading its body; `on_open()` is
    called once the answer is a 2xx.
    """
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with httpx_sse.connect_sse(client, "GET", url, headers=headers, timeout=timeout) as source:
        if source.response.is_error:
            source.response.read()
            source.response.raise_for_status()
        if on_open is not None:
            on_open()
        for sse in source.iter_sse():
            if sse.data:
                yield Event(sse.id or None, sse.event, json.loads(sse.data))


class StreamLost(Exception):
    """The stream could not be resumed within follow()'s patience."""


class EndedEarly(Exception):
    """The gateway ended the stream before the task's final event (it was shutting down, or
    this client fell too far behind): resume with the last id."""


def delay(failures: int, *, retry_after: float | None = None) -> float:
    """Seconds to wait before reconnecting after `failures` failed tries in a row: exponential
    from FIRST_DELAY up to MAX_DELAY, with jitter (so the clients of a dead replica do not all
    come back at once), and never less than the server's Retry-After."""
    ceiling = min(MAX_DELAY, FIRST_DELAY * 2 ** max(failures - 1, 0))
    backoff = random.uniform(ceiling / 2, ceiling)
    if retry_after is None:
        return backoff
    return max(backoff, min(max(retry_after, 0.0), RETRY_AFTER_MAX))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def follow(
    client: httpx.Client,
    url: str,
    *,
    last_event_id: str | None = None,
    patience: float = PATIENCE_SECONDS,
    timeout: float = 120,
    on_drop: Callable[[Exception, str | None], Any] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Event]:
    """Yield a task's events after `last_event_id` (None: all) to its final one, resuming with
    Last-Event-ID after a drop: none is missed or repeated.

    A drop is a lost connection, a stream the gateway ended before the final event, or an
    answer in RETRY_STATUSES; each is told to `on_drop(exc, last_id)`, then follow() waits
    delay() and reconnects. StreamLost once tries have kept failing for `patience` seconds
    (tries that bring an event, or a stream that stays open STEADY_SECONDS, start the count
    again); other error answers raise httpx.HTTPStatusError at once.
    """
    last_id = last_event_id
    failures = 0
    failing_since: float | None = None  # when the current run of failed tries began
    opened: list[float] = []  # when the current try's answer came (if it was a 2xx)
    while True:
        retry_after = None
        opened.clear()
        try:
            stream = events(
                client, url, last_event_id=last_id, timeout=timeout, on_open=lambda: opened.append(clock())
            )
            for event in stream:
                last_id = event.id or last_id
                failures, failing_since = 0, None
                yield event
                if event.event in FINAL_EVENTS:
                    return
            raise EndedEarly(f"the gateway ended the stream after event {last_id}")
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in RETRY_STATUSES:
                raise
            retry_after = _retry_after(exc.response)
            drop: Exception = exc
        except (httpx.TransportError, EndedEarly) as exc:
            drop = exc
        now = clock()
        if opened and now - opened[0] >= STEADY_SECONDS:
            failures, failing_since = 0, None
        failures += 1
        if failing_since is None:
            failing_since = now
        elif now - failing_since >= patience:
            raise StreamLost(
                f"no event for {patience:g} s of retries ({failures} tries); last event {last_id}"
            )
        if on_drop is not None:
            on_drop(drop, last_id)
        sleep(delay(failures, retry_after=retry_after))
