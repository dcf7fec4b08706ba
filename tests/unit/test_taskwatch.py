"""The LongTask watch's pure parts: which LongTasks it lists, watches and handles, and its
inventory after a LIST again, and whether every scope has listed.

Covers: none given means every namespace, one cluster-wide watch; plain names mean one
watch each; any pattern (glob or `!` exclusion) means one cluster-wide watch, filtered; a
LIST again forgets the unfinished tasks of its namespace it did not return; the unfinished
LongTasks are listed first (a field selector) and the watch starts from that list, then the
full LIST hands on only what was not listed already (and nothing finished that asks nothing);
against a CRD without the selector, the full LIST alone.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from longtask_contracts import names, poolaccess
from longtask_operator import scope, taskwatch
from tests import fakes


@pytest.mark.parametrize(
    ("namespaces", "scopes"),
    [
        ([], [None]),
        (["a"], ["a"]),
        (["a", "b"], ["a", "b"]),
        (["team-*"], [None]),
        (["a", "!kube-system"], [None]),
    ],
)
def test_scopes(namespaces, scopes):
    assert scope.scopes(namespaces) == scopes


@pytest.mark.parametrize(
    ("namespaces", "namespace", "expected"),
    [
        ([], "anything", True),
        (["a", "b"], "b", True),
        (["a", "b"], "c", False),
        (["team-*"], "team-x", True),
        (["team-*"], "other", False),
        (["!kube-*"], "default", True),
        (["!kube-*"], "kube-system", False),
        (["team-*", "!team-secret"], "team-secret", False),
        (["team-*", "!team-secret"], "team-open", True),
    ],
)
def test_in_scope(namespaces, namespace, expected):
    assert scope.in_scope(namespaces, namespace) is expected


def test_a_list_again_drops_unlisted_tasks_of_its_namespace():
    """Deleted while the watch was down: not listed again, so out of the inventory, where the
    sweep's orphan search (tasks Redis holds that the inventory does not) finds them."""
    watch = taskwatch.TaskWatch(redis=None, celery=None, kube=None, pools=poolaccess.Claims())  # type: ignore[arg-type]
    for uid, namespace in (("kept", "a"), ("deleted", "a"), ("elsewhere", "b")):
        watch.unfinished[uid] = taskwatch.Unfinished(namespace, uid, seen=0.0)
    watch._forget_unlisted("a", listed={"kept"})
    assert set(watch.unfinished) == {"kept", "elsewhere"}
    watch._forget_unlisted(None, listed={"kept"})
    assert set(watch.unfinished) == {"kept"}


def _task(name: str, phase: str | None, **annotations: str) -> dict:
    return {
        "metadata": {"namespace": "a", "name": name, "uid": f"uid-{name}", "annotations": annotations},
        "status": {"phase": phase} if phase else {},
    }


async def _follow(kube_: fakes.ListingKube, expected: int, redis_url: str) -> list[str]:
    """Run follow() until `expected` LongTasks were handled; their names in order."""
    redis = aioredis.Redis.from_url(redis_url)
    watch = taskwatch.TaskWatch(redis=redis, celery=None, kube=kube_, pools=poolaccess.Claims())  # type: ignore[arg-type]
    handled: list[str] = []
    enough = asyncio.Event()

    async def on_event(event_type: str | None, body: dict) -> None:
        handled.append(body["metadata"]["name"])
        if len(handled) >= expected:
            enough.set()

    watch.on_event = on_event  # type: ignore[method-assign]
    following = asyncio.create_task(watch.follow(None))
    try:
        await asyncio.wait_for(enough.wait(), timeout=10)
        await asyncio.sleep(0)  # let a wrongly repeated one show
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await redis.aclose()
    return handled


async def test_unfinished_tasks_are_listed_first_and_the_watch_starts_from_their_list(redis_url):
    """A restarted operator sends what is unfinished before it reads 10,000 finished ones,
    and a task listed as unfinished is not handled again from the full LIST."""
    replayed = _task("replayed", "Failed", **{names.REPLAY_ANNOTATION: "1"})  # asks something
    settled = _task("settled", "Succeeded")  # asks nothing: no handler at all
    kube_ = fakes.ListingKube(
        everything=[[replayed, _task("running", "Running")], [settled, _task("new", None)]],
        unfinished_selector=taskwatch.UNFINISHED,
    )
    handled = await _follow(kube_, expected=3, redis_url=redis_url)
    assert handled[:2] == ["running", "new"] and handled[2:] == ["replayed"], handled
    assert kube_.selectors == [taskwatch.UNFINISHED, None]
    assert kube_.watched_from == ["unfinished"]


async def test_an_older_crd_without_the_phase_selector_gets_the_full_list(redis_url):
    kube_ = fakes.ListingKube(
        everything=[[_task("running", "Running"), _task("new", None)]],
        unfinished_selector=taskwatch.UNFINISHED,
        unselectable=True,
    )
    handled = await _follow(kube_, expected=2, redis_url=redis_url)
    assert handled == ["running", "new"]
    assert kube_.selectors == [taskwatch.UNFINISHED, None]
    assert kube_.watched_from == ["full-0"]


async def test_listed_only_once_every_scope_listed(redis_url):
    """The maintenance loop sends retries only once the watch has listed (and forgotten what
    the LIST did not show): not before the first LIST, yes after it."""
    kube_ = fakes.ListingKube(
        everything=[[_task("running", "Running")]], unfinished_selector=taskwatch.UNFINISHED
    )
    redis = aioredis.Redis.from_url(redis_url)
    watch = taskwatch.TaskWatch(redis=redis, celery=None, kube=kube_, pools=poolaccess.Claims())  # type: ignore[arg-type]

    async def on_event(event_type: str | None, body: dict) -> None:
        pass

    watch.on_event = on_event  # type: ignore[method-assign]
    forgot = asyncio.Event()
    forget_deleted = watch._forget_deleted

    async def forget_then_tell(namespace: str | None, *, before: set[str], seen: set[str]) -> None:
        await forget_deleted(namespace, before=before, seen=seen)
        forgot.set()  # the waiter runs once follow() waits on its watch, after marking it listed

    watch._forget_deleted = forget_then_tell  # type: ignore[method-assign]
    assert not watch.listed()
    following = asyncio.create_task(watch.follow(None))
    try:
        await asyncio.wait_for(forgot.wait(), timeout=10)
        assert watch.listed()
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await redis.aclose()
