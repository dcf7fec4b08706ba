"""A real gateway whose Redis cannot be reached answers a submission 503 with Retry-After,
never 500.

Covers: a gateway process (`longtask api`) pointed at a Redis nobody listens on, and one
pointed at Sentinels nobody runs (no master can be found), each answer a create (with an
Idempotency-Key, whose record lives in Redis) with a 503 Problem carrying Retry-After, once
their retries (about 15 s) are spent; the same gateway still answers its liveness probe.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from longtask_api import errors
from longtask_dev import procs

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    "redis_env",
    [
        pytest.param(lambda dead: {"REDIS_URL": f"redis://127.0.0.1:{dead}/0"}, id="direct"),
        pytest.param(
            lambda dead: {
                "LONGTASK_REDIS_SENTINELS": f"127.0.0.1:{dead}",
                "LONGTASK_REDIS_MASTER": "longtask",
            },
            id="sentinels",
        ),
    ],
)
def test_a_submission_while_redis_is_unreachable_is_503_with_retry_after(platform, namespace, redis_env):
    port, dead = procs.free_port(), procs.free_port()  # nothing listens on `dead`
    child = platform.start_api(port=port, auth=False, extra_env=redis_env(dead))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            answer = client.post(
                f"/v1/namespaces/{namespace}/tasks",
                json={"spec": {"task": "demo.noop"}},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == str(errors.RETRY_AFTER_SECONDS)
            assert answer.json()["status"] == 503 and "Redis" in answer.json()["detail"]
            assert client.get("/healthz").status_code == 200
    finally:
        platform.stop_child(child)
