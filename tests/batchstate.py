"""A batch's Redis state written through the real batch script (batchledger.SCRIPT), as the
workers and the operator write it: for tests of what reads that state (the items listing)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from longtask_contracts import batchledger as R


class Batch:
    """A batch driven through the real script, as workers and the operator drive it."""

    def __init__(
        self, redis_client: Any, *, total: int, parallelism: int, uid: str = "", pool: str = ""
    ) -> None:
        self.uid = uid or f"u{uuid.uuid4().hex}"
        self.script = redis_client.register_script(R.SCRIPT)
        self.pool = pool or f"p{uuid.uuid4().hex[:8]}"
        self.keys = R.keys(self.uid, pool=self.pool)
        self.now = time.time()
        reply = self.call("start", total, parallelism, -1, self.pool, parallelism, 0, 3600)
        self.seqs = dict(R.lanes_to_send(reply, 1))

    def call(self, op: str, *rest: Any) -> Any:
        return self.script(keys=self.keys, args=R.args(self.uid, op, self.now, *rest))

    def take(self, lane: int, k: int) -> list[int]:
        seq = self.seqs[lane]
        if (
            self.call("claim", lane, seq, "pod", f"tag{lane}", self.now + 60, f"{self.pool} pod", self.pool)[
                0
            ]
            != 1
        ):
            raise AssertionError("claim refused")
        taken = R.parse_taken(self.call("take", lane, seq, k, 0))
        assert isinstance(taken, list)
        return [t.index for t in taken]

    def report(self, lane: int, outcomes: list[R.Outcome]) -> None:
        args = R.report_args(
            self.uid, lane=lane, seq=self.seqs[lane], expect="r", now=self.now, lease_end=0, outcomes=outcomes
        )
        assert R.parse_report(self.script(keys=self.keys, args=args)) is not None
