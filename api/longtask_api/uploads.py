"""The items the gateway stores for a batch too large for its LongTask (names.upload): Redis only.

A create whose `items` do not fit in the object (schemas.fits_inline) stores them here first,
then creates the LongTask with spec.itemsFrom {upload, count} naming them, so the operator
always finds them when it starts the batch (it renames the hash to the batch's
names.items_inputs). Every write sets the TTL, so an upload whose create never happened (the
apiserver refused it, the gateway died in between, Redis failed midway) goes away by itself.
It must not validate items (schemas.py did, before anything was written) nor touch Kubernetes.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis.asyncio as aioredis

from longtask_contracts import models, names

TTL_SECONDS = 86_400  # an upload no batch started from is deleted after a day
PIECE = 1000  # items per pipelined write: bounds the commands buffered at once


def new_id() -> str:
    """A fresh upload id (128 random bits; models.UPLOAD_PATTERN)."""
    return secrets.token_hex(16)


async def store(redis: aioredis.Redis, *, encoded: list[str]) -> models.ItemsFrom:
    """Store items (compact JSON each, index -> item) under a new upload id and return the
    spec.itemsFrom that names them. Each piece renews the TTL with its write."""
    upload_id = new_id()
    key = names.upload(upload_id)
    for start in range(0, len(encoded), PIECE):
        piece: dict[Any, Any] = {
            str(start + i): item for i, item in enumerate(encoded[start : start + PIECE])
        }
        pipe = redis.pipeline(transaction=False)
        pipe.hset(key, mapping=piece)
        pipe.expire(key, TTL_SECONDS)
        await pipe.execute()
    return models.ItemsFrom(upload=upload_id, count=len(encoded))


async def discard(redis: aioredis.Redis, items_from: models.ItemsFrom) -> None:
    """Delete an upload no LongTask names (an earlier request with the same Idempotency-Key
    created the task with its own)."""
    await redis.delete(names.upload(items_from.upload))
