"""A TCP load balancer for tests: several gateway replicas behind one address, as a Service
(or an Ingress, with `unavailable_answer`) puts them.

Each new connection goes to the next backend in turn that accepts it (a backend that
refuses is skipped, as a Service skips an endpoint that is not ready); bytes are copied both
ways unchanged; when a backend's side closes or resets (the process died), the client's
connection is closed too. When no backend accepts, the client's connection is closed
without a byte, or, with `unavailable_answer`, answered `503 Service Unavailable` as an
Ingress with no ready endpoint does. It runs its own event loop in a thread, so sync tests
can use it; it knows nothing of HTTP beyond that one canned answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent import futures

_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n"
    b"retry-after: 1\r\nconnection: close\r\n\r\nno backend is ready\n"
)
Backend = tuple[str, int]


class Balancer:
    """Use as a context manager; `url` is the address clients use."""

    def __init__(self, backends: list[Backend], *, unavailable_answer: bool = False) -> None:
        self.backends = list(backends)
        self.unavailable_answer = unavailable_answer
        self.port = 0
        self.refused = 0  # connections no backend accepted
        self._next = 0
        self._open: dict[Backend, int] = {}  # backend -> connections open through it now
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lbproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Balancer:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Stop listening and close every connection (in the loop's thread: asyncio is not
        thread-safe)."""
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def open_connections(self) -> dict[Backend, int]:
        """How many client connections each backend carries now."""
        with self._lock:
            return {b: n for b, n in self._open.items() if n}

    def _call(self, coro: object) -> asyncio.Server:
        future: futures.Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout=10)

    def _order(self) -> Iterator[Backend]:
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % max(1, len(self.backends))
            backends = list(self.backends)
        for i in range(len(backends)):
            yield backends[(start + i) % len(backends)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for backend in self._order():
            try:
                up_reader, up_writer = await asyncio.open_connection(*backend)
            except OSError:
                continue
            with self._lock:
                self._open[backend] = self._open.get(backend, 0) + 1
            try:
                await _splice(reader, writer, up_reader, up_writer)
            finally:
                with self._lock:
                    self._open[backend] -= 1
            return
        with self._lock:
            self.refused += 1
        with contextlib.suppress(OSError):
            if self.unavailable_answer:
                await reader.read(65536)  # the request (its head, at least) before the answer
                writer.write(_UNAVAILABLE)
                await writer.drain()
            writer.close()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side ends; then close both (the client sees the backend go)."""
    copies = [
        asyncio.ensure_future(_copy(reader, up_writer)),
        asyncio.ensure_future(_copy(up_reader, writer)),
    ]
    try:
        await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in copies:
            task.cancel()
        await asyncio.gather(*copies, return_exceptions=True)
        for w in (writer, up_writer):
            with contextlib.suppress(OSError, RuntimeError):
                w.close()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
