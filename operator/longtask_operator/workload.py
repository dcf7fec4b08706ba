"""Reads how much work each worker pool has, from Redis; it decides nothing and writes nothing.

Counted the way a pool's size should be judged, unlike a plain list length, and read in a
fixed number of commands per pool whatever the number or size of the messages (no message
body is ever read):
- queued: every priority list kombu keeps for the pool's queue (names.queue_lists), and the
  batches' items the pool could start now (names.pool_items: per batch, its queued items, at
  most its lanes not running; the batch script keeps it). A batch's lanes themselves are not
  counted while queued (their items are), and count as running once claimed;
- fetched: messages a worker took from the queue within the last `claim_timeout` and has
  not claimed yet (names.fetched: the worker records each one when it fetches it; its
  claim moves it to running). One older than that was lost with its worker or is about to
  be looked at by the operator (maintenance.py), so it no longer counts;
- running: claimed attempts by pod (names.busy, kept in step with names.RUNNING by the
  claim and release scripts, ledger.RUNNING_LUA). A dead worker's attempt stays there
  until the operator ends it, at most one maintenance tick after its lease ran out; its
  release also drops the message's kombu `unacked` entry, so nothing of it counts again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import names, wire


@dataclass(frozen=True)
class Load:
    queued: int = 0  # tasks waiting in the queue, and batch items the pool could start now
    items: int = 0  # of which batch items
    fetched: int = 0  # fetched by a worker, not claimed yet
    running: int = 0  # claimed
    pods: dict[str, int] = field(default_factory=dict)  # pod -> attempts it runs

    @property
    def in_flight(self) -> int:
        """Attempts held by workers: claimed, or fetched and about to be claimed."""
        return self.fetched + self.running


class Workload:
    def __init__(self, redis: aioredis.Redis, *, claim_timeout: float = 15.0) -> None:
        self.redis = redis
        self.claim_timeout = claim_timeout

    async def read(self, pools: list[str], *, now: float | None = None) -> dict[str, Load]:
        """The load of each pool in `pools`, in one round trip of 13 commands per pool (ten
        LLEN, a ZCOUNT, an HGETALL of at most one field per busy pod and an HGETALL of one field
        per batch with queued items)."""
        if not pools:
            return {}
        since = (time.time() if now is None else now) - self.claim_timeout
        pipe = self.redis.pipeline(transaction=False)
        for pool in pools:
            for key in names.queue_lists(pool):
                pipe.llen(key)
            pipe.zcount(names.fetched(pool), since, "+inf")
            pipe.hgetall(names.busy(pool))
            pipe.hgetall(names.pool_items(pool))
        replies: list[Any] = await pipe.execute()
        per = len(names.PRIORITY_STEPS) + 3
        loads = {}
        for i, pool in enumerate(pools):
            reply = replies[i * per : (i + 1) * per]
            pods = {wire.text(pod): int(n) for pod, n in reply[-2].items() if int(n) > 0}
            items = sum(int(n) for n in reply[-1].values())
            loads[pool] = Load(
                queued=sum(int(n) for n in reply[:-3]) + items,
                items=items,
                fetched=int(reply[-3]),
                running=sum(pods.values()),
                pods=pods,
            )
        return loads
