"""sharedgets.SharedGets: concurrent GETs of one LongTask share one apiserver call.

Covers: 20 callers asking while one GET is under way cause one GET and all get its answer;
another task's GET is its own; an error reaches every waiting caller; once a GET has landed
nothing is kept (the next caller causes a new GET); a caller that goes away does not cancel
the GET the others wait for.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from longtask_api import sharedgets
from longtask_runtime import kube


class GatedKube:
    """Stands for the apiserver: each get() is counted and answers when `gate` opens."""

    def __init__(self) -> None:
        self.gets: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.error: Exception | None = None

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        self.gets.append((namespace, name))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {"metadata": {"namespace": namespace, "name": name, "uid": f"uid-{len(self.gets)}"}}


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_gets_share_one_call_and_nothing_is_kept():
    fake = GatedKube()
    gets = sharedgets.SharedGets(cast(kube.Kube, fake))
    crowd = [asyncio.ensure_future(gets.get(namespace="ns", name="a")) for _ in range(20)]
    other = asyncio.ensure_future(gets.get(namespace="ns", name="b"))
    await _settle()
    assert sorted(fake.gets) == [("ns", "a"), ("ns", "b")]
    fake.gate.set()
    answers = await asyncio.gather(*crowd)
    assert {a["metadata"]["uid"] for a in answers} == {answers[0]["metadata"]["uid"]}
    assert (await other)["metadata"]["name"] == "b"
    assert gets.in_flight == 0
    await gets.get(namespace="ns", name="a")  # landed: a new GET
    assert fake.gets.count(("ns", "a")) == 2


async def test_an_error_reaches_every_caller_and_a_leaving_caller_cancels_nothing():
    fake = GatedKube()
    gets = sharedgets.SharedGets(cast(kube.Kube, fake))
    leaving = asyncio.ensure_future(gets.get(namespace="ns", name="a"))
    staying = [asyncio.ensure_future(gets.get(namespace="ns", name="a")) for _ in range(3)]
    await _settle()
    leaving.cancel()
    await _settle()
    fake.error = LookupError("not found")
    fake.gate.set()
    for caller in staying:
        with pytest.raises(LookupError):
            await caller
    assert fake.gets == [("ns", "a")] and gets.in_flight == 0
