"""Sends attempt 1 of each LongTask the gateway created, after its answer, in the background.

Redis and Celery only (longtask_runtime.sending); it must not touch Kubernetes nor shape
an HTTP answer. The create route answers as soon as the apiserver did and hands the
object to a queue here; a few sender coroutines send from it, so a send can neither delay
the answer nor turn into a 500. It sends only what the pool admits (sending.send_first,
poolaccess), by the gateway's own view of the WorkerPools; the rest is the operator's
(which fails a task its pool refuses). The operator still sends whatever this did not
(sending.send_first's guard decides who sends; a failure here, a full queue, or a gateway
killed mid-send leaves the task to the operator's watch or sweep), so nothing is raised:
failures are logged and counted.

Why a queue and few senders rather than a task per send: sending.send runs Celery's
send_task in the event loop's default thread pool. A task per POST would put dozens of
sends in that pool at once, ahead of anything else that needs it, and competing with the
loop for the GIL; a burst would also hold any number of objects. Two senders keep up with
the apiserver's create rate (a send takes about 5 ms); the queue bounds the rest.

A send is only worth it while it beats the operator, whose watch sees a new LongTask a few
milliseconds after its create. A task that waited in the queue longer than FRESH_SECONDS
(the gateway is busy answering a burst of creates) is left to the operator without a
Redis call: under load the gateway spends its CPU on answers, not on sends the operator
makes anyway (with the fast path on regardless, 64 creates in flight took the gateway's p99
from about 1.1x to 2.5-3x a direct create's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from longtask_api import metrics
from longtask_contracts import poolaccess
from longtask_runtime import redisconn, sending

log = logging.getLogger(__name__)

# Sends at once (each holds one thread while Celery publishes): enough to keep up with the
# apiserver's create rate (a send takes ~5 ms), few enough to leave the loop the GIL.
SENDERS = 2
# Created tasks waiting for a sender; beyond this the operator sends them (bounded memory).
BACKLOG = 1000
# A task that waited longer than this for a sender is left to the operator (module doc).
FRESH_SECONDS = 0.05


def redis_client(where: redisconn.Target | str) -> aioredis.Redis:
    """The senders' own Redis client: small, and quick to give up.

    Not the gateway's shared client (redisconn.async_client: a blocking pool, about a minute of retries):
    a first send that cannot reach Redis should fail soon, since the operator sends the
    task anyway, and its cheaper pool costs a send about 0.5 ms less CPU (of ~4 ms).
    """
    return redisconn.quick_async_client(where, max_connections=4 * SENDERS, timeout=5)


class FirstSends:
    """One per gateway process: the Celery sender, its queue and its sender coroutines."""

    def __init__(
        self, *, redis: aioredis.Redis, celery: Celery, pools: poolaccess.Claims, backlog: int = BACKLOG
    ) -> None:
        self.redis = redis
        self.celery = celery
        self.pools = pools  # a task its pool does not admit (or not yet known) is the operator's
        self._queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue(maxsize=backlog)
        self._senders: list[asyncio.Task[None]] = []

    @classmethod
    def open(
        cls, *, redis: aioredis.Redis, celery: Celery, pools: poolaccess.Claims, backlog: int = BACKLOG
    ) -> FirstSends:
        """A FirstSends whose sender coroutines run (call within the event loop); `redis`
        (redis_client) and `celery` (sending.celery_sender) are its own, closed by close();
        `pools` (kept by the gateway's poolwatch) decides which tasks it may send."""
        sends = cls(redis=redis, celery=celery, pools=pools, backlog=backlog)
        sends._senders = [asyncio.create_task(sends._run(), name=f"first-sender-{i}") for i in range(SENDERS)]
        return sends

    async def start(self, obj: dict[str, Any]) -> None:
        """Send attempt 1 of `obj` (the LongTask as the apiserver returned it) soon; return now.

        The route runs this as a background task, i.e. once its answer has left. The
        dispatch span's parent comes from the object's trace annotations
        (sending.first_attempt): it continues the create request's trace.
        """
        try:
            self._queue.put_nowait((time.monotonic(), obj))
        except asyncio.QueueFull:
            metrics.DISPATCH_LEFT.inc()
            meta = obj["metadata"]
            log.warning("first sends backlogged; the operator sends %s/%s", meta["namespace"], meta["name"])

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            since, obj = await self._queue.get()
            try:
                if time.monotonic() - since > FRESH_SECONDS:
                    metrics.DISPATCH_LEFT.inc()  # the operator has it by now
                else:
                    await self._send(obj)
            finally:
                self._queue.task_done()

    async def _send(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            sent = await sending.send_first(redis=self.redis, celery=self.celery, body=obj, pools=self.pools)
        except Exception as exc:
            metrics.DISPATCH_FAILURES.inc()
            log.warning(
                "could not send attempt 1 of %s/%s (the operator will): %s: %s",
                meta["namespace"],
                meta["name"],
                type(exc).__name__,
                exc,
            )
            return
        if sent:
            metrics.DISPATCHED.inc()
        else:
            metrics.DISPATCH_LEFT.inc()
            log.debug(
                "attempt 1 of %s/%s: sent by the operator, or its pool's admission is the operator's",
                meta["namespace"],
                meta["name"],
            )

    async def close(self, *, wait_seconds: float) -> None:
        """Let the queued sends finish (at most `wait_seconds`), then stop and close the sender.

        A send cut short here left its guard at "sending" (or took none): the operator
        sends that task (its watch, or its sweep once the guard ran out).
        """
        try:
            await asyncio.wait_for(self._queue.join(), wait_seconds)
        except TimeoutError:
            log.warning("%d first sends unfinished at shutdown; the operator sends them", self.waiting)
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self.celery.close()
        await self.redis.aclose()
