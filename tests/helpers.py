"""Test helpers shared by the end-to-end tests: polling with a deadline, an SSE reader."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx

from longtask_cli import sseclient

T = TypeVar("T")


def poll(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


SseEvent = sseclient.Event


def sse_events(
    client: httpx.Client, url: str, *, last_event_id: str | None = None, timeout: float = 60
) -> Iterator[SseEvent]:
    """Yield parsed SSE events from `url` until the server ends the stream."""
    return sseclient.events(client, url, last_event_id=last_event_id, timeout=timeout)


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def port_listening(port: int) -> bool:
    """True if a socket LISTENs on `port` (IPv4 or IPv6), read from /proc/net.

    A connect() probe is not used: to a closed port in the ephemeral range it can connect
    to itself (TCP simultaneous open) and report a listener that is not there.
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]  # noqa: SIM115 - tiny proc file
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False
