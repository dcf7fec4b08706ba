"""All of a lane's Redis I/O: the batch script's calls (claim, renew, take, report, park) and
the events a lane publishes.

It must not decide anything: lanes.py decides; the script (longtask_contracts.batchledger)
checks and changes the batch's state atomically.
"""

from __future__ import annotations

import time
from typing import Any

from longtask_contracts import batch, batchledger, events, ledger, names
from longtask_worker import store


class LaneStore:
    """One lane's view of its batch: `dispatch` is the batch's attempt (from the token),
    `lane` and `seq` the token's lane and generation, `tag` its message's delivery tag."""

    def __init__(
        self, base: store.Store, *, dispatch: ledger.Dispatch, lane: int, seq: int, tag: str
    ) -> None:
        self.base = base
        self.dispatch = dispatch
        self.uid = dispatch.uid
        self.lane, self.seq, self.tag = lane, seq, tag or "-"
        self._script = base.redis.register_script(batchledger.SCRIPT)
        spec = dispatch.spec
        self._keys = batchledger.keys(self.uid, pool=spec.pool, priority=spec.priority)
        self._look = len(batchledger.urgent_lists(spec.pool, spec.priority))

    def _call(self, op: str, *rest: Any, now: float | None = None) -> Any:
        return self._script(keys=self._keys, args=batchledger.args(self.uid, op, now or time.time(), *rest))

    def claim(self, *, lease_seconds: float) -> tuple[bool, bool]:
        """Take the lane (its token is current and the batch goes on): (claimed, the batch's
        first run)."""
        pod = self.base.pod
        entry = ledger.Claim(pool=self.dispatch.spec.pool, pod=pod, tag=self.tag if self.tag != "-" else "")
        reply = self._call(
            "claim",
            self.lane,
            self.seq,
            pod,
            self.tag,
            time.time() + lease_seconds,
            entry.encode(),
            self.dispatch.spec.pool,
        )
        return int(reply[0]) == 1, len(reply) > 1 and int(reply[1]) == 1

    def renew(self, *, lease_seconds: float) -> bool:
        """Renew the lane's lease; False if the lane is not ours any more (declared lost)."""
        return self.report([], lease_seconds=lease_seconds) is not None

    def take(self, how_many: int, *, yield_to_tasks: bool) -> list[batchledger.Taken] | int:
        """The next items (batchledger.parse_taken); `yield_to_tasks`: return -2 instead if a
        task of the batch's priority or above waits in the pool's main queue."""
        return batchledger.parse_taken(
            self._call("take", self.lane, self.seq, how_many, self._look if yield_to_tasks else 0)
        )

    def report(
        self, outcomes: list[batchledger.Outcome], *, lease_seconds: float
    ) -> batchledger.Report | None:
        now = time.time()
        args = batchledger.report_args(
            self.uid,
            lane=self.lane,
            seq=self.seq,
            expect="r",
            now=now,
            lease_end=now + lease_seconds,
            outcomes=outcomes,
        )
        return batchledger.parse_report(self._script(keys=self._keys, args=args))

    def park(self, *, again: bool) -> int | None:
        """Leave the lane: idle, or queued again (`again`: its new token's seq, to send). None if
        the lane was not ours any more."""
        reply = self._call("park", self.lane, self.seq, "r", "again" if again else "idle")
        if int(reply[0]) != 1:
            return None
        state = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
        return int(reply[1]) if state == batch.LaneState.QUEUED else None

    def mark_sent(self) -> None:
        """The lane's new token was sent: the operator need not send it again."""
        self.base.redis.zrem(names.LANE_SENDS, names.lane_member(self.uid, self.lane))

    def publish(self, event: events.TaskEvent) -> None:
        self.base.publish(event)

    def cancel_requested(self) -> bool:
        return self.base.cancel_requested(self.uid)
