"""Server-Sent Events from the gateway, read with httpx-sse, for `longtask watch` and the tests.

It only reads one stream; following a task across dropped connections (Last-Event-ID) is
follow()'s job, printing is display.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx_sse


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


def events(
    client: httpx.Client, url: str, *, last_event_id: str | None = None, timeout: float = 60
) -> Iterator[Event]:
    """Yield events from `url` until the server ends the stream; comments (pings) are skipped.

    Raises httpx.HTTPStatusError for a non-2xx answer, after reading its body.
    """
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with httpx_sse.connect_sse(client, "GET", url, headers=headers, timeout=timeout) as source:
        if source.response.is_error:
            source.response.read()
            source.response.raise_for_status()
        for sse in source.iter_sse():
            if sse.data:
                yield Event(sse.id or None, sse.event, json.loads(sse.data))


class StreamLost(Exception):
    """The stream dropped more often than `attempts` allows."""


def follow(
    client: httpx.Client, url: str, *, attempts: int = 30, timeout: float = 120, on_drop: Any = None
) -> Iterator[Event]:
    """Yield a task's events to the end, reconnecting with Last-Event-ID after a drop: none
    is missed or repeated. `on_drop(exc, last_id)` is told of each drop; StreamLost at the end."""
    last_id = None
    for _ in range(attempts):
        try:
            for event in events(client, url, last_event_id=last_id, timeout=timeout):
                last_id = event.id or last_id
                yield event
            return
        except httpx.TransportError as exc:
            if on_drop is not None:
                on_drop(exc, last_id)
    raise StreamLost(f"the stream dropped {attempts} times; last event {last_id}")
