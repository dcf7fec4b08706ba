"""The LongTask watch's pure parts: which LongTasks it lists, watches and handles, and its
inventory after a LIST again.

Covers: none given means every namespace, one cluster-wide watch; plain names mean one
watch each; any pattern (glob or `!` exclusion) means one cluster-wide watch, filtered; a
LIST again forgets the unfinished tasks of its namespace it did not return.
"""

from __future__ import annotations

import pytest

from longtask_operator import taskwatch


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
    assert taskwatch.scopes(namespaces) == scopes


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
    assert taskwatch.in_scope(namespaces, namespace) is expected


def test_a_list_again_drops_unlisted_tasks_of_its_namespace():
    """Deleted while the watch was down: not listed again, so out of the inventory, where the
    sweep's orphan search (tasks Redis holds that the inventory does not) finds them."""
    watch = taskwatch.TaskWatch(redis=None, celery=None, kube=None)  # type: ignore[arg-type]
    for uid, namespace in (("kept", "a"), ("deleted", "a"), ("elsewhere", "b")):
        watch.unfinished[uid] = taskwatch._Unfinished(namespace, uid, seen=0.0)
    watch._forget_unlisted("a", listed={"kept"})
    assert set(watch.unfinished) == {"kept", "elsewhere"}
    watch._forget_unlisted(None, listed={"kept"})
    assert set(watch.unfinished) == {"kept"}
