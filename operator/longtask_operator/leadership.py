"""Who may lead: the pure rules of leader election on a coordination.k8s.io/v1 Lease.

They are client-go's (k8s.io/client-go/tools/leaderelection): a candidate may take the
Lease when nobody holds it (no Lease yet, or holderIdentity empty: released), when it
holds it itself, or when it has expired. Expiry is judged on the candidate's own
monotonic clock from the moment it last saw the Lease's record change, never from the
renewTime written in it: clocks of different hosts may disagree, but each one's rate is
close enough to true that "leaseDurationSeconds since I saw it change" is safe. The
leader stops leading once it has not renewed within the renew deadline, measured from
the start of its last successful renewal, which is shorter than the lease: it stops
before any candidate may take the Lease.

No I/O here: leader.py reads and writes the Lease (through kube.py) and acts on these
answers.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

# Kubernetes' MicroTime, as the apiserver accepts it in a Lease (RFC 3339, microseconds).
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Record:
    """A Lease's spec, as far as leader election reads it."""

    holder: str  # holderIdentity; "" when released or never held
    duration_seconds: int  # leaseDurationSeconds
    acquire_time: str  # as written (MicroTime), "" if none
    renew_time: str
    transitions: int  # leaseTransitions

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


@dataclass(frozen=True)
class Seen:
    """The Lease as a candidate last saw it, and since when (its monotonic clock) it has
    looked exactly so."""

    record: Record
    version: str  # metadata.resourceVersion: a write is conditional on it
    since: float


def seen(previous: Seen | None, *, record: Record, version: str, now: float) -> Seen:
    """What a candidate knows after reading the Lease at `now`: the expiry clock restarts
    only when the record changed (a write that left the record as it was, or a re-read,
    does not make an expired Lease look fresh, and an unchanged one does not age twice)."""
    if previous is not None and previous.record == record:
        return Seen(record=record, version=version, since=previous.since)
    return Seen(record=record, version=version, since=now)


def may_take(lease: Seen | None, *, identity: str, now: float) -> bool:
    """Whether `identity` may write itself into the Lease at `now`: there is none yet, nobody
    holds it, it holds it itself, or it has expired (leaseDurationSeconds passed on our
    clock since we saw it change)."""
    if lease is None or not lease.record.holder or lease.record.holder == identity:
        return True
    return now >= lease.since + lease.record.duration_seconds


def must_stop(*, renewed_at: float, now: float, renew_deadline: float) -> bool:
    """Whether a leader whose last successful renewal started at `renewed_at` must stop
    leading at `now` (all on its monotonic clock)."""
    return now - renewed_at >= renew_deadline


def held(
    previous: Record | None, *, identity: str, duration_seconds: int, wall: datetime.datetime
) -> dict[str, Any]:
    """The Lease spec that takes or renews the Lease for `identity` at wall time `wall`:
    acquireTime and leaseTransitions change only when the holder does."""
    stamp = microtime(wall)
    same = previous is not None and previous.holder == identity
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration_seconds,
        "acquireTime": (previous.acquire_time if previous is not None and same else "") or stamp,
        "renewTime": stamp,
        # Counted at every take (as client-go counts), not at a renewal.
        "leaseTransitions": (previous.transitions if previous else 0)
        + (0 if same or previous is None else 1),
    }


def released(previous: Record, *, wall: datetime.datetime) -> dict[str, Any]:
    """The Lease spec its holder writes when it stops cleanly (client-go's release): no
    holder, a lease of 1 s, so a candidate takes it at its next look."""
    stamp = microtime(wall)
    return {
        "holderIdentity": None,
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": previous.transitions,
    }


def lease_name(base: str, *, namespaces: list[str]) -> str:
    """`base` for an operator of the whole cluster; for one scoped to `namespaces`, `base`
    plus a short hash of them, so operators of different scopes do not compete for one
    Lease (the same scope, in any order, gives the same name)."""
    if not namespaces:
        return base
    digest = hashlib.sha256(",".join(sorted(namespaces)).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def microtime(wall: datetime.datetime) -> str:
    return wall.astimezone(datetime.UTC).strftime(_MICROTIME)
