"""Which LongTasks an operator given namespaces lists, watches and handles (pure).

Covers: none given means every namespace, one cluster-wide watch; plain names mean one
watch each; any pattern (glob or `!` exclusion) means one cluster-wide watch, filtered.
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
