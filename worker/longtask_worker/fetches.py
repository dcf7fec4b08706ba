"""Records each message the worker's main process takes from a queue (Celery's
`task_received`, sent there before the message goes to a pool process): the pool counts it
as fetched until its attempt is claimed, and the operator can tell which attempt a kombu
`unacked` entry holds from the record instead of the message body (ledger.Delivery).

It must not run tasks nor decide anything; a record it fails to write is written again by
the claim (store.py), so a Redis blip here costs nothing but a moment's count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import signals

from longtask_contracts import ledger, names
from longtask_worker import store

log = logging.getLogger(__name__)


def connect(get_store: Callable[[], store.Store]) -> None:
    """Record every LongTask message this process receives in `get_store()`'s Redis."""

    def received(request: Any = None, **_: Any) -> None:
        delivery, tag = describe(request, pod=get_store().pod)
        if delivery is None:
            return
        try:
            get_store().fetched(delivery, tag=tag, at=time.time())
        except Exception:
            log.warning("could not record the delivery of %s; its claim will", request.id, exc_info=True)

    signals.task_received.connect(received, weak=False, dispatch_uid="longtask-fetched")


def describe(request: Any, *, pod: str) -> tuple[ledger.Delivery | None, str]:
    """The Delivery and delivery tag of a Celery request (None if it is not a LongTask attempt)."""
    if request is None or getattr(request, "name", None) != names.RUN_TASK:
        return None, ""
    uid, _, attempt = str(request.id or "").rpartition(".")
    tag = str(getattr(request.message, "delivery_tag", "") or "")
    args = request.args or [{}]
    pool = ((args[0] if isinstance(args[0], dict) else {}).get("spec") or {}).get("pool")
    if not uid or not attempt.isdigit() or not tag or not pool:
        return None, ""
    return ledger.Delivery(pool=str(pool), uid=uid, attempt=int(attempt), pod=pod), tag
