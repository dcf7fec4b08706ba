"""The status stream's Redis side for the status sync: its consumer group, the pages it
reads, acknowledgements with each task's `synced` mark and the held records of parked
tasks (names.STATUS_HELD, written in the MULTI of the XACK that they cover), and trimming.

Events arrive through a Redis consumer group, so an operator that restarts re-reads what
it had not yet acknowledged: first its backlog (its own pending entries and those a
previous operator left, adopted), page by page, once; then new entries. The stream is
trimmed here, and only here: below the oldest entry the group has not acknowledged (XTRIM
MINID), so an operator that is down or behind loses nothing, and never within the last
minute, which the gateway's namespace streams may still be reading. Entries pending under
another consumer name, found when trimming, are taken over and read as backlog again.

It must not fold events, write statuses or talk to Kubernetes (statussync.py decides what
is acknowledged when).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from longtask_contracts import events, ledger, names, wire

log = logging.getLogger(__name__)

_PAGE = 1000  # entries per XREADGROUP
_BLOCK_MS = 100  # how long a read of new entries waits for one
_TRIM_EVERY_SECONDS = 5.0
_TRIM_ROUNDS = 100
_KEEP_RECENT_MS = 60_000

Page = list[tuple[bytes, events.TaskEvent]]


def entry_id(raw: Any) -> tuple[int, int]:
    """A stream id as a comparable pair (ms, seq)."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class StatusStream:
    def __init__(self, *, redis: aioredis.Redis, consumer: str) -> None:
        self.redis = redis
        self.consumer = consumer
        self._backlog: Any = "0"  # where the next backlog page starts; None once it was read
        self._trimmed_at = 0.0

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(names.STATUS_STREAM, names.STATUS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def adopt_orphans(self) -> None:
        """Take over entries a previous operator (another pod, another name) left unacked.

        Only the leader runs the status sync (leader.py), and a former leader stops before
        a new one may start, so whatever is pending under any other consumer name belongs
        to an operator that no longer reads it.
        """
        cursor: Any = "0-0"
        while True:
            # Without JUSTID: redis-py then returns [next cursor, entries, deleted ids].
            reply: Any = await self.redis.xautoclaim(
                names.STATUS_STREAM,
                names.STATUS_GROUP,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=1000,
            )
            cursor = reply[0]
            if cursor in (b"0-0", "0-0"):
                return

    def start_over(self) -> None:
        """Read the backlog again from its start (after a failure: what was read but not
        acknowledged is read again)."""
        self._backlog = "0"

    async def read(self) -> tuple[list[tuple[bytes, dict[Any, Any]]], bool]:
        """The next page, and whether it is of the backlog (entries delivered before, some
        maybe folded already) rather than of new entries."""
        backlog = self._backlog is not None
        if self._backlog == "0":
            await self.ensure_group()
            await self.adopt_orphans()
        reply: Any = await self.redis.xreadgroup(
            names.STATUS_GROUP,
            self.consumer,
            {names.STATUS_STREAM: self._backlog or ">"},
            count=_PAGE,
            block=None if self._backlog else _BLOCK_MS,
        )
        entries: list[tuple[bytes, dict[Any, Any]]] = reply[0][1] if reply else []
        if self._backlog is not None:  # next page after the last entry, until none is left
            self._backlog = entries[-1][0] if entries else None
        return entries, backlog

    async def decode(self, entries: list[tuple[bytes, dict[Any, Any]]]) -> Page:
        """The events of `entries`; a malformed entry is acknowledged and dropped."""
        page: Page = []
        malformed: list[bytes] = []
        for raw_id, fields in entries:
            try:
                page.append((raw_id, events.TaskEvent.decode(fields)))
            except ValueError:
                log.warning("dropping malformed status entry %r", raw_id)
                malformed.append(raw_id)
        if malformed:
            await self.redis.xack(names.STATUS_STREAM, names.STATUS_GROUP, *malformed)
        return page

    async def unsynced(self, uids: list[str]) -> set[str]:
        """Those of `uids` without a `synced` mark (no entry of theirs was ever
        acknowledged): one pipeline for all."""
        if not uids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for uid in uids:
            pipe.exists(names.synced(uid))
        found = await pipe.execute()
        return {uid for uid, synced in zip(uids, found, strict=True) if not synced}

    async def ack(
        self,
        entry_ids: list[bytes],
        *,
        first_synced: list[str],
        hold: dict[str, str] | None = None,
        release: list[str] | None = None,
    ) -> None:
        """In one MULTI: acknowledge `entry_ids`, mark the tasks `first_synced` as synced,
        store the held records `hold` (uid -> statusheld.record) that cover some of those
        entries, and drop the records of the tasks in `release` (written since)."""
        pipe = self.redis.pipeline(transaction=True)
        if entry_ids:
            pipe.xack(names.STATUS_STREAM, names.STATUS_GROUP, *entry_ids)
        for uid in first_synced:
            pipe.set(names.synced(uid), "1", ex=ledger.KEY_TTL_SECONDS)
        if hold:
            pipe.hset(names.STATUS_HELD, mapping=hold)  # type: ignore[arg-type]
        if release:
            pipe.hdel(names.STATUS_HELD, *release)
        await pipe.execute()

    async def held(self) -> dict[str, bytes]:
        """Every held record (uid -> statusheld.record), read in bounded pages."""
        records: dict[str, bytes] = {}
        async for uid, raw in self.redis.hscan_iter(names.STATUS_HELD, count=500):
            records[wire.text(uid)] = raw
        return records

    async def trim(self) -> None:
        """Drop entries every consumer of the group has acknowledged, at most every few seconds."""
        now = time.monotonic()
        if now - self._trimmed_at < _TRIM_EVERY_SECONDS:
            return
        self._trimmed_at = now
        summary: Any = await self.redis.xpending(names.STATUS_STREAM, names.STATUS_GROUP)
        if any(wire.text(c.get("name")) != self.consumer for c in summary.get("consumers") or []):
            # Another consumer holds entries (an operator pod read them on its way out, after
            # this one started): take them over with the next page, or trimming stops at them.
            self.start_over()
        groups: Any = await self.redis.xinfo_groups(names.STATUS_STREAM)
        ours = next((g for g in groups if wire.text(g.get("name")) == names.STATUS_GROUP), None)
        if ours is None:
            return
        # Everything below the oldest pending entry, or up to the last delivered one, is read
        # and acknowledged; the last delivered entry itself is kept (MINID keeps >= id).
        floor = summary.get("min") if summary.get("pending") else ours.get("last-delivered-id")
        # Keep the last minute whatever the group read: the gateway's namespace streams
        # follow this stream too, and catch up from it after a reconnect.
        recent = f"{int(time.time() * 1000) - _KEEP_RECENT_MS}-0"
        if floor and entry_id(floor) > entry_id(recent):
            floor = recent
        if floor and entry_id(floor) > (0, 0):
            # Approximate trimming removes whole nodes, at most 10,000 entries a call (Redis'
            # default LIMIT), so Redis never stalls on one call; a long backlog takes several.
            for _ in range(_TRIM_ROUNDS):
                removed = await self.redis.xtrim(
                    names.STATUS_STREAM, minid=wire.text(floor), approximate=True
                )
                if not removed:
                    break
