"""How many TokenReviews the gateway's Guard asks for, against an apiserver that answers on cue.

Covers: requests that present the same unknown token at once share one review; at most
`reviews_at_once` reviews run at once, whoever asks; a caller that goes away does not
cancel the review others wait for. (That rejected tokens never evict accepted ones and that
each address has a budget of reviews is shown on a real gateway and apiserver:
tests/e2e/test_gateway_limits.py.)
"""

from __future__ import annotations

import asyncio

from longtask_api import access, auth


class Apiserver:
    """TokenReviews answered when `answer` is set: tokens starting with good- are accepted."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.reviews = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def who(self, token: str) -> access.Identity | None:
        self.reviews += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.answer.wait()
        finally:
            self.in_flight -= 1
        return access.Identity(username=token) if token.startswith("good-") else None


def _guard(api: Apiserver, *, at_once: int = 8) -> auth.Guard:
    return auth.Guard(reviews=api, ttl=60, size=100, reviews_at_once=at_once)  # type: ignore[arg-type]


async def _settle() -> None:
    for _ in range(20):  # let every runnable coroutine run
        await asyncio.sleep(0)


async def test_one_review_per_token_however_many_wait():
    api = Apiserver()
    guard = _guard(api)
    callers = [asyncio.create_task(guard.authenticate("Bearer good-a", client="c")) for _ in range(50)]
    await _settle()
    callers[0].cancel()  # one goes away: the review goes on for the others
    api.answer.set()
    done = await asyncio.gather(*callers[1:])
    assert {c.identity.username for c in done} == {"good-a"}
    assert api.reviews == 1


async def test_reviews_at_once_are_bounded():
    api = Apiserver()
    guard = _guard(api, at_once=3)
    callers = [asyncio.create_task(guard.authenticate(f"Bearer good-{i}", client="c")) for i in range(20)]
    await _settle()
    assert api.in_flight == 3
    api.answer.set()
    await asyncio.gather(*callers)
    assert api.most_in_flight == 3 and api.reviews == 20
