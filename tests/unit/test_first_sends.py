"""The gateway's first sends (firstsend.FirstSends), with sending.send_first replaced.

Covers: start() returns at once and the send happens afterwards, counted as dispatched;
a send the operator made first is counted as left to the operator; a send that raises is
logged with the task's namespace/name and counted as a failure, never raised, and the
senders carry on; a full queue leaves the task to the operator; close() waits for queued
sends, stops the senders and closes its Celery sender and Redis client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from longtask_api import firstsend, metrics
from longtask_contracts import poolaccess
from longtask_runtime import sending
from tests import fakes


def task(name: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
        "spec": {"task": "demo.noop"},
    }


def value(counter: Any) -> float:
    return float(counter._value.get())


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names sent; a name starting with "taken" was sent by the operator, "boom" raises."""
    names: list[str] = []

    async def send_first(*, redis: Any, celery: Any, body: dict[str, Any], pools: Any) -> object | None:
        await asyncio.sleep(0.01)
        name = body["metadata"]["name"]
        if name.startswith("boom"):
            raise ConnectionError("Redis went away")
        if name.startswith("taken"):
            return None
        names.append(name)
        return object()

    monkeypatch.setattr(sending, "send_first", send_first)
    return names


async def test_sends_after_start_returned_and_counts_each_outcome(sent, caplog):
    celery, redis = fakes.ClosingCelery(), fakes.ClosingRedis()
    sends = firstsend.FirstSends.open(redis=redis, celery=celery, pools=poolaccess.Claims())  # type: ignore[arg-type]
    before = [value(c) for c in (metrics.DISPATCHED, metrics.DISPATCH_LEFT, metrics.DISPATCH_FAILURES)]
    with caplog.at_level(logging.WARNING, logger=firstsend.__name__):
        await sends.start(task("a"))
        assert sent == [], "start() only queues"
        await sends.start(task("taken-1"))
        await sends.start(task("boom-1"))
        await sends.start(task("b"))
        await sends.close(wait_seconds=5)
    assert sorted(sent) == ["a", "b"], "a failure does not stop the senders"
    after = [value(c) for c in (metrics.DISPATCHED, metrics.DISPATCH_LEFT, metrics.DISPATCH_FAILURES)]
    assert [x - y for x, y in zip(after, before, strict=True)] == [2, 1, 1]
    assert "ns/boom-1" in caplog.text and "ConnectionError" in caplog.text
    assert celery.closed and redis.closed


async def test_a_full_queue_leaves_the_task_to_the_operator(sent):
    sends = firstsend.FirstSends(
        redis=None, celery=fakes.ClosingCelery(), pools=poolaccess.Claims(), backlog=1
    )  # type: ignore[arg-type]
    left = value(metrics.DISPATCH_LEFT)
    await sends.start(task("first"))
    await sends.start(task("second"))  # no sender runs: the queue holds one
    assert value(metrics.DISPATCH_LEFT) == left + 1 and sends.waiting == 1
