"""Gateway settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O."""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGTASK_", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # SSE keep-alive comment interval; proxies drop connections idle for longer than ~60 s.
    sse_ping_seconds: float = 15.0
    # How long the shared reader's blocking XREAD waits before it reads again.
    sse_block_ms: int = 5000
    max_body_bytes: int = 256 * 1024
    # Watchers share one reader per process (fanout.Hub); handlers borrow connections briefly.
    redis_max_connections: int = 512
    # Events a watcher may fall behind by before its stream ends (it resumes by reconnecting).
    watcher_queue_size: int = 1000
    # Ask Kubernetes who the caller is (TokenReview) and whether they may (SubjectAccessReview).
    auth: bool = True
    # How long an authentication or authorization decision is reused, and how many are kept.
    auth_cache_seconds: float = 10.0
    auth_cache_size: int = 10_000
    # Every call to the apiserver gives up after this long (the client then gets a 503).
    kube_timeout_seconds: float = 10.0
    # Task creation per caller (user, or client IP when auth is off): a token bucket
    # refilled at this rate, holding at most `create_burst`; a rate of 0 turns it off.
    create_rate_per_second: float = 10.0
    create_burst: int = 100
    # Send attempt 1 of each task it creates itself, after answering, instead of waiting for
    # the operator's watch (which still sends whatever the gateway did not); false: the operator
    # sends every attempt. Env LONGTASK_GATEWAY_DISPATCH.
    gateway_dispatch: bool = True
    # Origins allowed to call from a browser (comma-separated); empty: no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@functools.cache
def get_settings() -> ApiSettings:
    return ApiSettings()
