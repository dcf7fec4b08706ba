"""longtask's Celery settings, one source for the workers and the operator that sends to
them; it configures a Celery app object and opens no connection.

Each setting chosen for tasks that run minutes to hours:
- JSON only (never pickle); no result backend: results travel as events.
- acks_late + reject_on_worker_lost: a message is acknowledged only after its attempt
  ended, so a worker that dies mid-task hands the message back instead of losing it.
- prefetch 1: a busy worker does not hoard queued tasks that an idle one could run.
- a long visibility timeout: liveness comes from the workers' leases, not from Redis
  redelivering "slow" messages (celery#5935).
- one kombu list per LongTask priority (names.PRIORITY_STEPS), served most urgent first.
- through Redis Sentinels when the settings name them (redisconn.Target): kombu's sentinel
  transport, a subclass of its redis one (same lists, priorities and unacked bookkeeping),
  which asks the Sentinels for the master on every (re)connect.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

from celery import Celery

from longtask_contracts import names
from longtask_runtime import redisconn

VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600
RESTORE_INTERVAL_SECONDS = 60


def configure(
    app: Celery,
    *,
    redis_url: redisconn.Target | str,
    pool: str = "default",
    concurrency: int = 2,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    restore_interval_seconds: int = RESTORE_INTERVAL_SECONDS,
) -> None:
    """Set `app`'s configuration; `redis_url` is the broker: a URL, or a redisconn.Target
    (through its Sentinels if it names some)."""
    target = redisconn.of(redis_url)
    transport: dict[str, Any] = {
        "visibility_timeout": visibility_timeout_seconds,
        "unacked_restore_interval": restore_interval_seconds,
        "unacked_restore_throttle": 1,  # the interval alone sets the sweep period
        "socket_connect_timeout": 5,
        "queue_order_strategy": "priority",
        "priority_steps": names.PRIORITY_STEPS,  # one list per LongTask priority
    }
    app.conf.update(broker_url=target.url)
    if target.sentinels:
        app.conf.update(broker_url=sentinel_broker_url(target), broker_use_ssl=broker_ssl(target))
        transport.update(master_name=target.master, sentinel_kwargs=target.sentinel_kwargs())
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=concurrency,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        task_default_queue=names.queue(pool),
        broker_heartbeat=0,
        worker_enable_remote_control=False,
    )


def sentinel_broker_url(target: redisconn.Target) -> str:
    """kombu's sentinel URL: `sentinel://[user:password@]host:port/db` per Sentinel, joined by
    ";" (each carries the data nodes' credentials and database, which kombu reads from the first)."""
    parts = urlsplit(target.url)
    auth = ""
    if parts.username or parts.password:
        user, password = (quote(unquote(part or ""), safe="") for part in (parts.username, parts.password))
        auth = f"{user}:{password}@"  # as the URL had them (quoted once)
    db = parts.path.lstrip("/") or "0"
    return ";".join(f"sentinel://{auth}{_host(host)}:{port}/{db}" for host, port in target.sentinels)


def broker_ssl(target: redisconn.Target) -> dict[str, Any] | None:
    """kombu's TLS options for the data nodes (ssl_* from a rediss:// URL), None without TLS."""
    if not target.tls:
        return None
    options = {k: v for k, v in target.node_kwargs().items() if k.startswith("ssl_")}
    options.setdefault("ssl_cert_reqs", "required")
    return options


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
