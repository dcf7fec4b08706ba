"""The operator's Kubernetes Events are posted by a fixed number of posters.

Covers: a mass cancel (500 Cancelled phases at once) never has more than AT_ONCE Event
POSTs in flight nor a coroutine per Event; those beyond the backlog are dropped and
counted; every queued one is posted once the apiserver answers again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from longtask_operator import statusevents


class SlowEvents:
    """The Event POSTs of an apiserver that answers only when told to; counts those in flight."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.posted: list[str] = []

    async def post_event(self, *, name: str, **_: Any) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.answer.wait()
            self.posted.append(name)
        finally:
            self.in_flight -= 1


async def test_a_mass_cancel_posts_a_bounded_number_of_events_at_once():
    api = SlowEvents()
    poster = statusevents.EventPoster(kube=api, backlog=300)  # type: ignore[arg-type]
    tasks_before = len(asyncio.all_tasks())
    for i in range(500):
        poster.phase_reached(uid=f"u{i}", namespace="ns", name=f"t{i}", status={"phase": "Cancelled"})
    for _ in range(10):  # let every runnable coroutine run
        await asyncio.sleep(0)
    assert api.in_flight == statusevents.AT_ONCE
    assert len(asyncio.all_tasks()) - tasks_before == statusevents.AT_ONCE
    # the 300 of the backlog are kept (AT_ONCE of them in flight), the rest dropped
    assert poster.dropped == 500 - 300
    api.answer.set()
    await poster.flushed()
    assert len(api.posted) == 300
    assert api.most_in_flight == statusevents.AT_ONCE
    assert len(set(api.posted)) == len(api.posted)
    await poster.close()
