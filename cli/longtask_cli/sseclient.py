"""A small Server-Sent Events reader over httpx, for `longtask watch` and the tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


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
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        if response.is_error:
            response.read()
            response.raise_for_status()
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields:
                    yield Event(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value
