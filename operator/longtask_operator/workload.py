"""Reads how much work each worker pool has, from Redis; it decides nothing and writes nothing.

Counted the way a pool's size should be judged, unlike a plain list length:
- queued: every priority list kombu keeps for the pool's queue (names.queue_lists);
- fetched: messages workers took from the queue and have not acknowledged (kombu's
  `unacked` hash; with acks_late that is every attempt running or about to start);
- running: attempts whose lease a worker holds (names.RUNNING, checked against the live
  claim so a dead worker's entry never counts), and the pod each one runs on.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import names, wire

# KEYS: the unacked hash, then every pool's lists. ARGV: the number of lists per pool,
# then one `"<queue>"]` suffix per pool (how kombu's JSON [message, exchange, routing key]
# ends for a message of that queue). Returns queued, fetched for each pool in turn.
_DEPTHS = """
local per = tonumber(ARGV[1])
local pools = #ARGV - 1
local out = {}
for p = 1, pools do
  local queued = 0
  for i = 1, per do
    queued = queued + redis.call('LLEN', KEYS[1 + (p - 1) * per + i])
  end
  out[2 * p - 1] = queued
  out[2 * p] = 0
end
local suffixes = {}
for p = 1, pools do suffixes[p] = ARGV[p + 1] end
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  for p = 1, pools do
    local s = suffixes[p]
    if string.sub(raw, -#s) == s then
      out[2 * p] = out[2 * p] + 1
      break
    end
  end
end
return out
"""


@dataclass(frozen=True)
class Load:
    queued: int = 0
    fetched: int = 0
    running: int = 0
    pods: dict[str, int] = field(default_factory=dict)  # pod -> attempts it runs

    @property
    def in_flight(self) -> int:
        """Attempts held by workers: claimed ones, or fetched ones if more (about to claim)."""
        return max(self.fetched, self.running)


class Workload:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._depths = redis.register_script(_DEPTHS)

    async def read(self, pools: list[str]) -> dict[str, Load]:
        """The load of each pool in `pools`, read in two round trips whatever their number."""
        if not pools:
            return {}
        keys = [names.KOMBU_UNACKED, *(key for pool in pools for key in names.queue_lists(pool))]
        args: list[str | int] = [len(names.PRIORITY_STEPS), *(f'"{names.queue(pool)}"]' for pool in pools)]
        depths: list[Any] = await self._depths(keys=keys, args=args)
        running = await self._running()
        loads = {}
        for i, pool in enumerate(pools):
            pods = running.get(pool, collections.Counter())
            loads[pool] = Load(
                queued=int(depths[2 * i]),
                fetched=int(depths[2 * i + 1]),
                running=sum(pods.values()),
                pods=dict(pods),
            )
        return loads

    async def _running(self) -> dict[str, collections.Counter[str]]:
        """pool -> Counter(pod -> attempts), for attempts whose claim is still alive."""
        entries: dict[Any, Any] = await self.redis.hgetall(names.RUNNING)
        if not entries:
            return {}
        items = [(wire.text(uid), wire.text(where)) for uid, where in entries.items()]
        pipe = self.redis.pipeline(transaction=False)
        for uid, _ in items:
            pipe.exists(names.claim(uid))
        alive = await pipe.execute()
        result: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for (_, where), live in zip(items, alive, strict=True):
            if live:
                pool, _, pod = where.partition(" ")
                result[pool][pod] += 1
        return result
