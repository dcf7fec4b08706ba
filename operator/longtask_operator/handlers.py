"""All Kopf wiring of the operator; each handler calls domain code in one to three lines.

Run with `longtask operator` (or `kopf run -m longtask_operator.handlers --all-namespaces`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import prometheus_client
import redis.asyncio as aioredis

from longtask_contracts import names
from longtask_operator import dispatch, kube, settings, statussync

LT = (names.GROUP, names.VERSION, names.PLURAL)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = configure(settings)
    memo.redis = aioredis.Redis.from_url(cfg.redis_url)
    memo.celery = dispatch.celery_sender(cfg.redis_url)
    memo.kube = await kube.Kube.connect()
    sync = statussync.StatusSync(
        redis=memo.redis, kube=memo.kube, consumer=cfg.consumer, interval=cfg.status_interval_seconds
    )
    memo.sync_task = asyncio.create_task(sync.run(), name="status-sync")
    if cfg.metrics_port:
        prometheus_client.start_http_server(cfg.metrics_port, addr="127.0.0.1")


def configure(kopf_settings: kopf.OperatorSettings) -> settings.OperatorSettings:
    """Kopf settings, set explicitly so that behaviour never depends on Kopf's defaults."""
    # Our own finalizer name, should a handler ever need one (none does yet: deletion
    # clean-up is optional, so a LongTask never hangs when the operator is gone).
    kopf_settings.persistence.finalizer = names.FINALIZER
    # Handler progress and the last-handled spec live in annotations under our prefix,
    # not in .status, which belongs to the LongTask's own phase and progress.
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=names.ANNOTATION_PREFIX
    )
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Watches are renewed every 5 minutes by the server; the client gives it 30 s more.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.watching.connect_timeout = 10
    # Kopf waits this long for more events of one object before handling them; the
    # default 0.1 s would be most of our dispatch latency.
    kopf_settings.batching.batch_window = 0.01
    # One operator per cluster for now: no peering objects to install.
    kopf_settings.peering.standalone = True
    kopf_settings.posting.level = logging.WARNING
    return settings.get_settings()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    memo.sync_task.cancel()
    await asyncio.gather(memo.sync_task, return_exceptions=True)
    await memo.redis.aclose()
    await memo.kube.close()


@kopf.on.create(*LT)
@kopf.on.resume(*LT)
async def dispatch_task(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await dispatch.dispatch(redis=memo.redis, celery=memo.celery, body=dispatch.plain(body))


@kopf.on.delete(*LT, optional=True)
async def forget_task(uid: str, memo: kopf.Memo, **_: Any) -> None:
    await dispatch.forget(redis=memo.redis, uid=uid)
