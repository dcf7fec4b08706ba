"""Which namespace may use which pool: WorkerPool claims and their namespaceSelectors; pure.

A WorkerPool claims its pool name (spec.pool, else its own name) for its own namespace;
its `spec.namespaceSelector` (a metav1 LabelSelector, matched against Namespace labels)
opens the pool to other namespaces: `{}` admits every namespace, absent admits only its
own. A pool no WorkerPool claims is open to everyone (workers started by hand). Of two
WorkerPools claiming one pool, the older (creationTimestamp, then name, then namespace)
holds it; the newer is in conflict and admits nothing by itself. It is the model of
Kueue's ClusterQueue namespaceSelector, with the pool's home namespace always admitted.

Everything here reads the plain dicts the apiserver returns (WorkerPools, Namespaces) and
returns plain data; the watches that feed `Claims` are longtask_runtime.poolwatch, and the
decisions are taken by their callers (the gateway at create, the operator and the gateway
before a first send). It must not do I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CONFLICT = "Conflict"  # the WorkerPool status condition of a claim that lost to an older one
NAME_LABEL = "kubernetes.io/metadata.name"  # set by the apiserver on every Namespace


# -- label selectors ---------------------------------------------------------------------
def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a metav1 LabelSelector selects `labels`: every matchLabels pair and every
    matchExpressions requirement holds (`{}` selects everything). An operator it does not
    know, or In/NotIn without values, selects nothing (the CRD refuses both)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_requirement(expr, labels) for expr in selector.get("matchExpressions") or [])


def _requirement(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator, values = expr.get("key", ""), expr.get("operator"), list(expr.get("values") or [])
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator == "In":
        return bool(values) and key in labels and labels[key] in values
    if operator == "NotIn":
        return bool(values) and (key not in labels or labels[key] not in values)
    return False


def namespace_labels(namespace: dict[str, Any]) -> dict[str, str]:
    """A Namespace's labels, with kubernetes.io/metadata.name (the apiserver sets it; an
    object from an older apiserver may lack it)."""
    meta = namespace.get("metadata") or {}
    return {**(meta.get("labels") or {}), NAME_LABEL: str(meta.get("name", ""))}


# -- claims ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claimant:
    """One WorkerPool's claim on a pool name."""

    namespace: str
    name: str
    pool: str
    created: str  # metadata.creationTimestamp (RFC 3339, "Z": sorts as it reads)
    selector: dict[str, Any] | None  # spec.namespaceSelector; None: its own namespace only

    @property
    def seniority(self) -> tuple[str, str, str]:
        """The older claim sorts first: creationTimestamp, then name (then namespace)."""
        return (self.created, self.name, self.namespace)

    def __str__(self) -> str:
        return f"WorkerPool {self.namespace}/{self.name}"


def claimant(pool: dict[str, Any]) -> Claimant:
    """The claim a WorkerPool object makes."""
    meta, spec = pool.get("metadata") or {}, pool.get("spec") or {}
    selector = spec.get("namespaceSelector")
    return Claimant(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        pool=str(spec.get("pool") or meta.get("name", "")),
        created=str(meta.get("creationTimestamp") or ""),
        selector=dict(selector) if isinstance(selector, dict) else None,
    )


def owners(claims: Iterable[Claimant]) -> dict[str, Claimant]:
    """Each claimed pool's holder: the oldest of its claimants."""
    held: dict[str, Claimant] = {}
    for claim in claims:
        holder = held.get(claim.pool)
        if holder is None or claim.seniority < holder.seniority:
            held[claim.pool] = claim
    return held


def admits(owner: Claimant, *, namespace: str, labels: dict[str, str] | None) -> bool | None:
    """Whether the pool `owner` holds admits `namespace` (whose labels are `labels`, None if
    unknown); None when that cannot be told without the labels."""
    if namespace == owner.namespace:
        return True
    if owner.selector is None:
        return False
    if not owner.selector:  # {}: every namespace
        return True
    if labels is None:
        return None
    return matches(owner.selector, {**labels, NAME_LABEL: namespace})


class Outcome(enum.Enum):
    ALLOWED = "allowed"  # unclaimed, or its holder admits the namespace
    REFUSED = "refused"  # its holder does not admit the namespace: the task must not run there
    UNKNOWN = "unknown"  # not decidable yet (claims not listed, namespace labels not seen)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str = ""  # why, naming the pool and the namespace (refused, unknown)
    holder: Claimant | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


def refusal_message(*, pool: str, namespace: str, holder: Claimant) -> str:
    return (
        f"pool {pool!r} is claimed by {holder}, whose namespaceSelector does not admit "
        f"namespace {namespace!r}"
    )


def verdict(
    held: dict[str, Claimant], *, namespace: str, pool: str, labels: dict[str, str] | None
) -> Verdict:
    """May a LongTask in `namespace` run on `pool`, given the pools' holders (owners())."""
    holder = held.get(pool)
    if holder is None:
        return Verdict(Outcome.ALLOWED)
    allowed = admits(holder, namespace=namespace, labels=labels)
    if allowed is None:
        return Verdict(Outcome.UNKNOWN, f"the labels of namespace {namespace!r} are not known yet", holder)
    if allowed:
        return Verdict(Outcome.ALLOWED, holder=holder)
    return Verdict(Outcome.REFUSED, refusal_message(pool=pool, namespace=namespace, holder=holder), holder)


def confirmed(
    verdict: Verdict,
    *,
    namespace: str,
    pool: str,
    live_pool: dict[str, Any] | None,
    live_namespace: dict[str, Any] | None,
) -> Verdict:
    """A REFUSED `verdict` checked against the holder WorkerPool and the Namespace as read
    just now (None: gone): still REFUSED only if the holder still claims `pool` and still
    does not admit `namespace`; UNKNOWN otherwise (the watches are behind: look again later).
    A refusal is final (the task fails), so a watch that lags must not make one."""
    if verdict.outcome is not Outcome.REFUSED or verdict.holder is None:
        return verdict
    if live_pool is None or live_namespace is None:
        return Verdict(
            Outcome.UNKNOWN, f"{verdict.holder} or namespace {namespace!r} changed", verdict.holder
        )
    now = claimant(live_pool)
    if now.pool != pool or admits(now, namespace=namespace, labels=namespace_labels(live_namespace)):
        return Verdict(Outcome.UNKNOWN, f"{verdict.holder} changed since the watch showed it", now)
    return Verdict(Outcome.REFUSED, refusal_message(pool=pool, namespace=namespace, holder=now), now)


# -- the Conflict condition ----------------------------------------------------------------
def conflict_condition(claim: Claimant, holder: Claimant) -> dict[str, str]:
    """The Conflict condition `claim`'s WorkerPool should show, `holder` holding its pool."""
    if holder == claim:
        return {
            "type": CONFLICT,
            "status": "False",
            "reason": "PoolHeld",
            "message": f"this WorkerPool holds pool {claim.pool!r}",
        }
    return {
        "type": CONFLICT,
        "status": "True",
        "reason": "PoolClaimedElsewhere",
        "message": f"pool {claim.pool!r} is held by the older {holder}; its namespaceSelector "
        "decides who may use the pool, this WorkerPool's does not",
    }


def condition_changes(
    conditions: list[dict[str, Any]], wanted: dict[str, str], *, now: str
) -> list[dict[str, Any]] | None:
    """`conditions` with `wanted` merged in by type (every other type kept as it is), or
    None if they already say it. lastTransitionTime moves only when the status does. A
    Conflict condition that is False and absent is left absent: a WorkerPool that was never
    in conflict carries none (no write per pool)."""
    old = next((c for c in conditions if c.get("type") == wanted["type"]), None)
    if old is None and wanted["status"] == "False":
        return None
    if old is not None and all(old.get(k) == v for k, v in wanted.items()):
        return None
    same = old is not None and old.get("status") == wanted["status"]
    merged = {**wanted, "lastTransitionTime": old.get("lastTransitionTime", now) if same and old else now}
    kept = [c for c in conditions if c.get("type") != wanted["type"]]
    return [*kept, merged]


# -- the state the watches keep ------------------------------------------------------------
class Claims:
    """Every WorkerPool and every Namespace's labels, as the watches last showed them, and
    the decisions they give. Plain state: fed by longtask_runtime.poolwatch."""

    def __init__(self) -> None:
        self.pools: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name) -> object
        self.labels: dict[str, dict[str, str]] = {}  # namespace -> labels
        self.pools_listed = False  # the WorkerPools were listed once (claims are known)
        self.namespaces_listed = False
        self._held: dict[str, Claimant] | None = None

    # feeding
    def list_pools(self, items: list[dict[str, Any]]) -> None:
        self.pools = {_key(obj): obj for obj in items}
        self.pools_listed, self._held = True, None

    def pool_event(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self.pools.pop(_key(obj), None)
        else:
            self.pools[_key(obj)] = obj
        self._held = None

    def list_namespaces(self, items: list[dict[str, Any]]) -> None:
        self.labels = {str(obj["metadata"]["name"]): namespace_labels(obj) for obj in items}
        self.namespaces_listed = True

    def namespace_event(self, event_type: str, obj: dict[str, Any]) -> None:
        name = str(obj["metadata"]["name"])
        if event_type == "DELETED":
            self.labels.pop(name, None)
        else:
            self.labels[name] = namespace_labels(obj)

    # deciding
    def held(self) -> dict[str, Claimant]:
        """Each claimed pool's holder."""
        if self._held is None:
            self._held = owners(claimant(obj) for obj in self.pools.values())
        return self._held

    def verdict(self, *, namespace: str, pool: str) -> Verdict:
        """May a LongTask in `namespace` run on `pool`? UNKNOWN until the WorkerPools were listed."""
        if not self.pools_listed:
            return Verdict(Outcome.UNKNOWN, "the WorkerPools are not listed yet")
        return verdict(self.held(), namespace=namespace, pool=pool, labels=self.labels.get(namespace))

    def conditions_due(self, *, now: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(WorkerPool, its new status.conditions) for each WorkerPool whose Conflict
        condition is not what its claim says (see condition_changes)."""
        held = self.held()
        due = []
        for obj in self.pools.values():
            claim = claimant(obj)
            wanted = conflict_condition(claim, held[claim.pool])
            conditions = list((obj.get("status") or {}).get("conditions") or [])
            merged = condition_changes(conditions, wanted, now=now)
            if merged is not None:
                due.append((obj, merged))
        return due


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (str(meta.get("namespace", "")), str(meta["name"]))
