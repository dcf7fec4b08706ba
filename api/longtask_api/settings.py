"""Gateway settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O.

Each field's docstring is its documentation (docs/settings.md is generated from it)."""

from __future__ import annotations

import functools

from pydantic import Field

from longtask_runtime import settings


class ApiSettings(settings.Base):
    gateway_processes: int = Field(default=1, ge=1, le=64)
    """Gateway processes `longtask api` runs on its one port (uvicorn's workers), each a whole
    gateway with its own shared stream reader; a child that dies is replaced. Rate limits,
    stream limits and auth caches are each process' own (docs/security.md)."""

    profile_file: str = ""
    """Profile the gateway (cProfile, its event loop's thread) from start to stop and write the
    stats to this file when it stops (`python -m pstats FILE`); one process only (with
    LONGTASK_GATEWAY_PROCESSES above 1 it is ignored). For benchmarks: it slows every request."""

    sse_ping_seconds: float = 15.0
    """Seconds between the keep-alive comments of an SSE stream; proxies drop connections idle for
    longer than about 60 s."""

    sse_block_ms: int = 5000
    """Milliseconds the shared stream reader's blocking XREAD waits for new events before it reads
    again."""

    max_body_bytes: int = 256 * 1024
    """Largest request body accepted, in bytes (with a Content-Length or chunked); a larger one is
    answered 413."""

    max_batch_body_bytes: int = 64 * 1024 * 1024
    """Largest body of a create (POST /v1/namespaces/{namespace}/tasks), in bytes: a batch's
    `items` come in it. Every other request keeps LONGTASK_MAX_BODY_BYTES."""

    max_batch_items: int = Field(default=100_000, ge=1, le=1_000_000)
    """Most `items` one create may carry; more are answered 422. Those that do not fit in the
    LongTask itself (over 1000 items or 512 KiB of JSON) are stored in Redis (docs/batches.md)."""

    redis_max_connections: int = 512
    """Redis connections one gateway process may hold at once: SSE watchers share one reader per
    process (fanout.Hub), request handlers borrow a connection briefly."""

    watcher_queue_size: int = 1000
    """Events an SSE watcher may fall behind by before its stream ends (its client resumes by
    reconnecting)."""

    batch_event_seconds: float = Field(default=0.5, ge=0)
    """Seconds at least between two counts-only events of one batch that a watcher (SSE,
    WebSocket) is sent: those coming sooner are held and merged into one (the latest counts,
    their failed items together, the latest id); 0: each as the workers publish it."""

    streams_per_caller: int = 100
    """Live streams (SSE and WebSocket) one caller (the user, or the client IP when auth is off)
    may hold open at once in one gateway process; one more is answered 429 with Retry-After
    (a WebSocket is closed with 1008); 0: no limit."""

    auth: bool = True
    """Ask Kubernetes who each caller is (TokenReview) and whether they may act
    (SubjectAccessReview); false: anyone who reaches the gateway may do anything."""

    auth_cache_seconds: float = 10.0
    """Seconds an authentication or authorization decision is reused."""

    auth_cache_size: int = 10_000
    """Authentication and authorization decisions kept (each), the oldest evicted first; tokens
    Kubernetes rejected are kept apart (as many again), so they never evict accepted ones."""

    auth_review_rate_per_second: float = 5.0
    """TokenReviews each client address may cause per second for tokens not in the cache: a token
    bucket per gateway process, beyond which such a request is answered 429 with Retry-After
    (cached tokens are not counted); 0: no limit. Behind a proxy every client shares its
    address unless uvicorn is told to trust X-Forwarded-For."""

    auth_review_burst: int = 50
    """TokenReviews one client address may cause at once: the most that token bucket holds."""

    auth_reviews_at_once: int = 8
    """TokenReviews one gateway process runs at once, whoever asks (the rest wait their turn)."""

    kube_timeout_seconds: float = 10.0
    """Seconds after which every call to the apiserver gives up (the client then gets a 503)."""

    create_rate_per_second: float = 10.0
    """Tasks each caller (the user, or the client IP when auth is off) may create per second: a
    token bucket per gateway process refilled at this rate, beyond which a create is answered
    429 with Retry-After; 0: no limit."""

    create_burst: int = 100
    """Tasks a caller may create at once: the most that token bucket holds."""

    gateway_dispatch: bool = True
    """Send attempt 1 of each task the gateway creates itself, right after answering, instead of
    waiting for the operator's watch (which still sends whatever the gateway did not); false:
    the operator sends every attempt."""

    idempotency_seconds: int = Field(default=86_400, ge=1)
    """Seconds the gateway remembers a create's Idempotency-Key (its body's fingerprint and the
    task it made), from the create on: a retry within them gets the same task, even one deleted
    meanwhile. After them the key still finds its task for as long as that LongTask exists."""

    cors_origins: settings.CommaList = Field(default_factory=list)
    """Browser origins allowed to call the gateway, comma-separated; empty: no CORS headers at all."""


@functools.cache
def get_settings() -> ApiSettings:
    return ApiSettings()
