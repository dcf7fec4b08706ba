"""Which namespaces the operator looks after: plain names, glob patterns and `!` exclusions.

It is pure: it decides what the task watch lists and watches and which LongTasks (and
Redis tasks, for the sweep) are ours. It must not talk to Redis or Kubernetes.
"""

from __future__ import annotations

import fnmatch


def scopes(namespaces: list[str]) -> list[str | None]:
    """What to list and watch: each namespace given, or all (None) if none is given or one
    is a pattern (`team-*`, `!kube-system`: then filtered by in_scope as they arrive)."""
    if not namespaces or any(_pattern(ns) for ns in namespaces):
        return [None]
    return list(namespaces)


def in_scope(namespaces: list[str], namespace: str) -> bool:
    """Whether `namespace` is one of `namespaces` (all if empty): it matches a pattern given
    and no pattern given with a leading `!`."""
    wanted = [ns for ns in namespaces if not ns.startswith("!")]
    unwanted = [ns[1:] for ns in namespaces if ns.startswith("!")]
    if wanted and not any(fnmatch.fnmatchcase(namespace, ns) for ns in wanted):
        return False
    return not any(fnmatch.fnmatchcase(namespace, ns) for ns in unwanted)


def _pattern(namespace: str) -> bool:
    return namespace.startswith("!") or any(c in namespace for c in "*?[")
