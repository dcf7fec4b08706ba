"""The autoscaler's informers: LIST, then WATCH from the list's version, on from the last
version seen when a watch ends, LIST again only when the version expired.

Covers: events (added, modified, deleted) kept by name; bookmarks move the version without
changing anything; a watch the server ends goes on without a LIST; a 410 lists again and
the new list replaces what was kept; managedFields are dropped; an object the caller wrote
is kept until the watch brings it again.
"""

from __future__ import annotations

import asyncio

from longtask_operator import informer, loopguard
from longtask_runtime import kubeerrors
from tests import fakes


def obj(name: str, version: str, **extra: object) -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": version, "managedFields": [{}]}, **extra}


async def test_list_then_watch_on_from_the_last_version_and_relist_on_410():
    kube = fakes.ScriptedWatchKube(
        lists=[([obj("a", "1")], "1"), ([obj("b", "7"), obj("c", "9")], "10")],
        watches=[
            (
                [("MODIFIED", obj("a", "2", spec=1)), ("ADDED", obj("b", "3")), ("BOOKMARK", obj("", "4"))],
                None,
            ),
            ([("DELETED", obj("a", "5"))], kubeerrors.Expired("too old", status=410)),
        ],
    )
    changes = []
    cache = informer.Informer(
        kube=kube,  # type: ignore[arg-type]  # a fake of the calls it makes (fakes.WatchingKube)
        kind="pods",
        namespace="ns",
        label_selector="app=x",
        on_change=lambda: changes.append(1),
        guard=loopguard.Guard("test"),
    ).start()
    try:
        await asyncio.wait_for(kube.idle.wait(), timeout=10)
    finally:
        await cache.stop()
    assert kube.watched_from == ["1", "4", "10"], "on from the bookmark; from the new list after a 410"
    assert kube.listed == 2
    assert sorted(cache.objects) == ["b", "c"], "the second list replaced what was kept"
    assert all("managedFields" not in o["metadata"] for o in cache.objects.values())
    assert cache.synced
    assert len(changes) == 5  # 2 lists + modified, added, deleted (not the bookmark)


async def test_an_object_the_caller_wrote_is_kept_until_the_watch_brings_it():
    kube = fakes.ScriptedWatchKube(lists=[([obj("a", "1", cost="0")], "1")])
    cache = informer.Informer(
        kube=kube,  # type: ignore[arg-type]
        kind="pods",
        namespace="ns",
        on_change=lambda: None,
        guard=loopguard.Guard("test"),
    ).start()
    try:
        await asyncio.wait_for(kube.idle.wait(), timeout=10)
        cache.put(obj("a", "2", cost="1000"))
        assert cache.objects["a"]["cost"] == "1000"
    finally:
        await cache.stop()
