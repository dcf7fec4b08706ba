"""Gateway settings, read once from the environment (LONGTASK_* and REDIS_URL); no I/O."""

from __future__ import annotations

import functools

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGTASK_", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # SSE keep-alive comment interval; proxies drop connections idle for longer than ~60 s.
    sse_ping_seconds: float = 15.0
    # How long one blocking XREAD waits before checking whether the client is still there.
    sse_block_ms: int = 5000
    max_body_bytes: int = 256 * 1024
    # Each open SSE stream holds one Redis connection while it waits; more streams queue.
    redis_max_connections: int = 512


@functools.cache
def get_settings() -> ApiSettings:
    return ApiSettings()
