"""The gateway's pure guards: the decision cache, the create rate limit, the bearer parser.

Covers: cache entries expire after the TTL and the oldest go first past the size bound;
a TTL of 0 caches nothing; token buckets grant a burst, then say how long to wait, refill
at the rate, are kept per key, and a rate of 0 turns the limit off; Retry-After rounds up
to whole seconds; only `Bearer <token>` headers yield a token; each route maps to its verb.
"""

from __future__ import annotations

import pytest

from longtask_api import access, auth, ratelimit, ttlcache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_entries_expire_and_the_oldest_are_evicted():
    clock = Clock()
    cache: ttlcache.TtlCache[str] = ttlcache.TtlCache(ttl=10, size=2, clock=clock)
    cache.put("a", "1")
    clock.now += 5
    cache.put("b", "2")
    assert cache.get("a") == (True, "1")
    clock.now += 5
    assert cache.get("a") == (False, None), "expired after 10 s"
    cache.put("c", "3")
    cache.put("d", "4")
    assert cache.get("b") == (False, None) and len(cache) == 2, "bounded: the oldest went"
    assert cache.get("d") == (True, "4")


def test_a_zero_ttl_caches_nothing():
    cache: ttlcache.TtlCache[bool] = ttlcache.TtlCache(ttl=0, size=10)
    cache.put("a", True)
    assert cache.get("a") == (False, None)


def test_token_buckets_grant_a_burst_then_refill_per_key():
    clock = Clock()
    buckets = ratelimit.Buckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("alice") == pytest.approx(0.5)
    assert buckets.take("bob") == 0.0, "each caller has its own bucket"
    clock.now += 0.5
    assert buckets.take("alice") == 0.0
    clock.now += 100
    assert [buckets.take("alice") for _ in range(4)][-1] > 0, "never more than the burst"


def test_a_zero_rate_turns_the_limit_off():
    buckets = ratelimit.Buckets(rate=0, burst=1)
    assert all(buckets.take("x") == 0.0 for _ in range(100))


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (999.5, 1000)])
def test_retry_after_is_whole_seconds_rounded_up(wait, header):
    assert ratelimit.retry_after(wait) == header


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer abc.def", "abc.def"),
        ("bearer  abc ", "abc"),
    ],
)
def test_bearer_token(header, token):
    assert auth.bearer_token(header) == token


def test_each_route_needs_one_kubernetes_verb():
    assert {r.name: (r.value.verb, r.value.resource) for r in access.Route} == {
        "CREATE_TASK": ("create", "longtasks.longtask.io"),
        "GET_TASK": ("get", "longtasks.longtask.io"),
        "LIST_TASKS": ("list", "longtasks.longtask.io"),
        "CANCEL_TASK": ("patch", "longtasks.longtask.io"),
        "LIST_DEADLETTERS": ("list", "longtasks.longtask.io/deadletters"),
        "REPLAY_DEADLETTERS": ("patch", "longtasks.longtask.io/deadletters"),
        "WATCH_TASKS": ("watch", "longtasks.longtask.io"),
        "LIST_POOLS": ("list", "workerpools.longtask.io"),
        "LIST_SCHEDULES": ("list", "longtaskschedules.longtask.io"),
        "GET_SCHEDULE": ("get", "longtaskschedules.longtask.io"),
        "PATCH_SCHEDULE": ("patch", "longtaskschedules.longtask.io"),
    }


@pytest.mark.parametrize(
    ("subprotocols", "token"),
    [
        (["base64url.bearer.authorization.k8s.io.YS5iLmM", "longtask.v1"], "a.b.c"),
        (["longtask.v1"], None),
        (["base64url.bearer.authorization.k8s.io.!!!"], None),
        ([], None),
    ],
)
def test_websocket_token_from_subprotocol(subprotocols, token):
    assert auth.subprotocol_token(subprotocols) == token
