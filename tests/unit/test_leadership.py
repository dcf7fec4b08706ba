"""The rules of leader election (longtask_operator.leadership), as client-go has them.

Covers: who may take the Lease (none yet, released, our own, expired on our clock since
we saw it change, never while another holder renews it), that renewTime's wall clock
plays no part (skew), when a leader must stop (the renew deadline), the spec written at a
take, a renewal and a release, the Lease's name by scope, and the settings' timing rule.
"""

from __future__ import annotations

import datetime

import pydantic
import pytest

from longtask_operator import leadership, settings

WALL = datetime.datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=datetime.UTC)


def record(
    holder: str = "b", *, duration: int = 15, renew: str = "2026-12-05T09:59:59.000000Z"
) -> leadership.Record:
    return leadership.Record(
        holder=holder,
        duration_seconds=duration,
        acquire_time="2026-12-05T09:00:00.000000Z",
        renew_time=renew,
        transitions=4,
    )


def seen_at(rec: leadership.Record, since: float) -> leadership.Seen:
    return leadership.Seen(record=rec, version="7", since=since)


@pytest.mark.parametrize(
    ("lease", "now", "may"),
    [
        (None, 0.0, True),  # no Lease yet
        (seen_at(record(""), 100.0), 100.0, True),  # released
        (seen_at(record("a"), 100.0), 100.0, True),  # our own
        (seen_at(record("b"), 100.0), 100.0, False),  # another's, just seen
        (seen_at(record("b"), 100.0), 114.9, False),  # not yet expired
        (seen_at(record("b"), 100.0), 115.0, True),  # lease seconds since we saw it change
        (seen_at(record("b", duration=1), 100.0), 101.0, True),  # the duration written is the one used
    ],
)
def test_who_may_take_the_lease(lease, now, may):
    assert leadership.may_take(lease, identity="a", now=now) is may


def test_expiry_counts_from_when_the_record_last_changed_on_our_clock():
    first = leadership.seen(None, record=record(renew="2001-01-01T00:00:00.000000Z"), version="1", now=100.0)
    # A renewTime far in the past (another host's clock) does not make it expired now...
    assert not leadership.may_take(first, identity="a", now=101.0)
    # ...and reading it again unchanged keeps the clock running from the first sight.
    again = leadership.seen(first, record=first.record, version="2", now=110.0)
    assert again.since == 100.0 and again.version == "2"
    assert leadership.may_take(again, identity="a", now=115.0)
    # A renewal (the record changed) starts the clock over.
    renewed = leadership.seen(
        again, record=record(renew="2001-01-01T00:00:02.000000Z"), version="3", now=112.0
    )
    assert renewed.since == 112.0
    assert not leadership.may_take(renewed, identity="a", now=126.0)
    assert leadership.may_take(renewed, identity="a", now=127.0)


@pytest.mark.parametrize(("now", "stop"), [(109.9, False), (110.0, True), (200.0, True)])
def test_a_leader_stops_at_the_renew_deadline(now, stop):
    assert leadership.must_stop(renewed_at=100.0, now=now, renew_deadline=10.0) is stop


def test_taking_renewing_and_releasing_write_client_gos_record():
    taken = leadership.held(record("b"), identity="a", duration_seconds=15, wall=WALL)
    assert taken == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-12-05T10:00:00.123456Z",
        "renewTime": "2026-12-05T10:00:00.123456Z",
        "leaseTransitions": 5,
    }
    renewed = leadership.held(record("a"), identity="a", duration_seconds=15, wall=WALL)
    assert renewed["acquireTime"] == "2026-12-05T09:00:00.000000Z"  # kept while we hold it
    assert renewed["leaseTransitions"] == 4
    assert leadership.held(None, identity="a", duration_seconds=15, wall=WALL)["leaseTransitions"] == 0
    released = leadership.released(record("a"), wall=WALL)
    assert released["holderIdentity"] is None  # a merge patch removes it
    assert released["leaseDurationSeconds"] == 1
    assert released["leaseTransitions"] == 4
    assert leadership.may_take(seen_at(leadership.Record.of({"spec": released}), 0.0), identity="b", now=0.0)


def test_the_lease_name_depends_on_the_scope_only():
    assert leadership.lease_name("longtask-operator", namespaces=[]) == "longtask-operator"
    scoped = leadership.lease_name("longtask-operator", namespaces=["team-a", "team-b"])
    assert scoped.startswith("longtask-operator-") and len(scoped) == len("longtask-operator-") + 8
    assert scoped == leadership.lease_name("longtask-operator", namespaces=["team-b", "team-a"])
    assert scoped != leadership.lease_name("longtask-operator", namespaces=["team-a"])


def test_settings_need_retry_below_renew_deadline_below_lease(monkeypatch):
    monkeypatch.setenv("LONGTASK_LEADER_RENEW_DEADLINE_SECONDS", "15")
    with pytest.raises(pydantic.ValidationError, match="retry < renew deadline < lease"):
        settings.OperatorSettings()
    monkeypatch.setenv("LONGTASK_LEADER_RENEW_DEADLINE_SECONDS", "10")
    cfg = settings.OperatorSettings()
    assert (cfg.leader_retry_seconds, cfg.leader_renew_deadline_seconds, cfg.leader_lease_seconds) == (
        2,
        10,
        15,
    )
