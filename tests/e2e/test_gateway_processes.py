"""`longtask api` with LONGTASK_GATEWAY_PROCESSES=2: several gateway processes on one port.

Covers: two child processes serve the one port (each answers a stream while the other is
SIGSTOPped, so the one that answered is known); /metrics, from whichever child answers,
counts the streams of both (`longtask_api_sse_streams` 2) and the events of both; a child
SIGKILLed is replaced by a new one that answers, and its stream no longer counts; SIGTERM to
the parent alone ends every child and the parent.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import parser

from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import helpers

pytestmark = pytest.mark.cluster


def _children(parent: int) -> set[int]:
    """The gateway processes uvicorn spawned under `parent` (not multiprocessing's tracker)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                argv = cmd.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"spawn_main" in argv:
            found.add(int(entry))
    return found


def _open_stream(port: int, namespace: str) -> socket.socket:
    """A namespace-wide SSE stream on a fresh connection, once the gateway said `: ready`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    request = (
        f"GET /v1/namespaces/{namespace}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    seen = b""
    while b": ready" not in seen:
        chunk = sock.recv(4096)
        assert chunk, f"the stream closed before it was ready: {seen!r}"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen
    return sock


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    """SIGSTOP `pid` for the block: it accepts nothing meanwhile, so the other child answers."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _answers_alone(port: int, *, paused: int) -> bool:
    with _paused(paused):
        return procs.http_ok(f"http://127.0.0.1:{port}/readyz")


def _streams(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "longtask_api_sse_streams":
                return float(sample.value)
    raise AssertionError("no longtask_api_sse_streams in /metrics")


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    return True


def test_two_processes_serve_one_port_and_are_supervised(
    platform: platform_mod.Platform, namespace: str
) -> None:
    port = procs.free_port()
    child = platform.start_api(port=port, auth=False, extra_env={"LONGTASK_GATEWAY_PROCESSES": "2"})
    try:
        first, second = sorted(
            helpers.poll(
                lambda: len(_children(child.pid)) == 2 and _children(child.pid),
                timeout=60,
                what="two gateway processes",
            )
        )
        for busy in (first, second):  # each has started and answers while the other is paused
            helpers.poll(
                functools.partial(_answers_alone, port, paused=busy), timeout=120, what="each to answer"
            )
        with _paused(first):
            on_second = _open_stream(port, namespace)
        with _paused(second):
            on_first = _open_stream(port, namespace)
        assert _streams(port) == 2  # both children's streams, whichever child answered the scrape

        os.kill(first, signal.SIGKILL)
        assert _closed(on_first)
        replaced = helpers.poll(
            lambda: (kids := _children(child.pid)) - {first, second} and len(kids) == 2 and kids,
            timeout=60,
            what="a new gateway process in place of the killed one",
        )
        (newcomer,) = replaced - {second}
        helpers.poll(
            lambda: _streams(port) == 1, timeout=30, what="the killed child's stream to stop counting"
        )
        # Short pauses (2 s at most each) until the newcomer answers alone: a child paused for
        # longer than the supervisor's health ping allows would be replaced as hung.
        helpers.poll(lambda: _answers_alone(port, paused=second), timeout=120, what="the new child to answer")
        with _paused(second):
            on_newcomer = _open_stream(port, namespace)
        assert _streams(port) == 2
        assert child.alive() and _children(child.pid) == {second, newcomer}

        os.kill(child.pid, signal.SIGTERM)  # the parent alone; it must stop its children
        assert child.popen is not None
        assert child.popen.wait(timeout=30) == 0
        assert _closed(on_second) and _closed(on_newcomer)
        helpers.poll(
            lambda: not any(helpers.process_alive(p) for p in (second, newcomer)),
            timeout=30,
            what="every gateway process to end",
        )
        assert not helpers.port_listening(port)
    finally:
        platform.stop_child(child)
