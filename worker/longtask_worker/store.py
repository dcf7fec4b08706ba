"""All of the worker's Redis I/O: publishing events, the run lease, the cancel flag.

It must not decide anything: runner.py decides, this module reads and writes keys.
"""

from __future__ import annotations

import redis

from longtask_contracts import events, names

_DONE_TTL_SECONDS = 7 * 24 * 3600


class Store:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def publish(self, event: events.TaskEvent) -> str:
        """Append the event to the task's stream and to the operator's status stream.

        Both writes go in one MULTI so the operator never sees an event that SSE clients
        will not, and the other way round. Returns the event's id in the task stream.
        """
        pipe = self.redis.pipeline(transaction=True)
        events.queue_publish(pipe, event)
        if event.terminal:
            pipe.set(names.done(event.uid), str(event.attempt), ex=_DONE_TTL_SECONDS)
        stream_id, _, *_ = pipe.execute()
        return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)

    def claim(self, *, uid: str, attempt: int, worker: str, lease_seconds: float) -> bool:
        """Take the run lease for this attempt, unless the task is done or someone holds it."""
        if self.redis.exists(names.done(uid)):
            return False
        holder = f"{attempt}:{worker}"
        return bool(self.redis.set(names.claim(uid), holder, nx=True, px=int(lease_seconds * 1000)))

    def renew(self, *, uid: str, lease_seconds: float) -> None:
        self.redis.pexpire(names.claim(uid), int(lease_seconds * 1000))

    def release(self, *, uid: str) -> None:
        self.redis.delete(names.claim(uid))

    def cancel_requested(self, uid: str) -> bool:
        return bool(self.redis.exists(names.cancel_flag(uid)))
