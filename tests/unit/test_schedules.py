"""When a LongTaskSchedule's runs are due (pure): cron in a time zone across daylight-saving
changes, leap days and month ends, descriptors, `@every` from its anchor whatever restarts,
CronJob's rule for missed times, and clear errors for what no clock can follow."""

from __future__ import annotations

import datetime

import pytest

from longtask_contracts import schedules

UTC = datetime.UTC


def t(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


ANCHOR = t("2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "expected"),
    [
        # 02:30 Berlin does not exist on 2026-03-29 (02:00 -> 03:00): it runs at 03:00 CEST.
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+01:00", "2026-03-29T03:00:00+02:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"),
        # 02:30 Berlin happens twice on 2026-10-25: it runs once, at the first (CEST).
        ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00+02:00", "2026-10-25T02:30:00+02:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"),
        # The same in UTC is untouched by Berlin's clocks.
        ("30 2 * * *", "UTC", "2026-03-28T12:00:00+00:00", "2026-03-29T02:30:00+00:00"),
        # 02:00 Berlin on a normal night, and the nightly refresh's time.
        ("0 2 * * *", "Europe/Berlin", "2026-12-05T10:00:00+00:00", "2026-12-06T02:00:00+01:00"),
        # Feb 29 only in leap years.
        ("0 0 29 2 *", "UTC", "2026-03-01T00:00:00+00:00", "2028-02-29T00:00:00+00:00"),
        # The 31st skips the months without one.
        ("0 12 31 * *", "UTC", "2026-04-01T00:00:00+00:00", "2026-05-31T12:00:00+00:00"),
        # Descriptors.
        ("@hourly", "UTC", "2026-05-01T10:15:00+00:00", "2026-05-01T11:00:00+00:00"),
        ("@daily", "Europe/Berlin", "2026-05-01T10:15:00+00:00", "2026-05-02T00:00:00+02:00"),
        ("@weekly", "UTC", "2026-12-05T10:00:00+00:00", "2026-12-06T00:00:00+00:00"),  # Sunday
        ("@monthly", "UTC", "2026-12-05T10:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("@yearly", "UTC", "2026-12-05T10:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        # Strictly after: a time equal to `after` is not due again.
        ("*/5 * * * *", "UTC", "2026-05-01T10:15:00+00:00", "2026-05-01T10:20:00+00:00"),
    ],
)
def test_next_time(schedule, zone, after, expected):
    clock = schedules.parse(schedule, zone)
    assert clock.next_after(t(after), anchor=ANCHOR) == t(expected)


def test_every_counts_from_its_anchor_whatever_restarts():
    clock = schedules.parse("@every 90s")
    anchor = t("2026-05-01T10:00:07+00:00")
    # A restart reads the clock at any moment: the times stay on the anchor's grid.
    for after in ("2026-05-01T10:00:07", "2026-05-01T10:01:00", "2026-05-01T10:01:37", "2026-05-01T10:59:59"):
        due = clock.next_after(t(after + "+00:00"), anchor=anchor)
        assert (due - anchor).total_seconds() % 90 == 0 and due > t(after + "+00:00")
    assert clock.next_after(anchor, anchor=anchor) == t("2026-05-01T10:01:37+00:00")
    assert schedules.parse("@every 1h30m").every == 5400
    assert schedules.parse("@every 4s").interval_hint(after=anchor, anchor=anchor) == 4


@pytest.mark.parametrize(
    ("schedule", "zone", "says"),
    [
        ("61 * * * *", "UTC", "61"),
        ("* * * *", "UTC", "5 fields"),
        ("@fortnightly", "UTC", "unknown descriptor"),
        ("@every 0s", "UTC", "at least 1 s"),
        ("@every soon", "UTC", "duration such as"),
        ("0 2 * * *", "Mars/Olympus", "IANA time zone"),
        ("TZ=UTC 0 2 * * *", "UTC", "spec.timeZone"),
    ],
)
def test_what_no_clock_can_follow_is_refused_saying_what(schedule, zone, says):
    with pytest.raises(schedules.InvalidSchedule, match=says):
        schedules.parse(schedule, zone)


def test_cronjob_rule_for_missed_times():
    clock = schedules.parse("* * * * *")
    last = t("2026-05-01T10:00:00+00:00")
    # Back after 5 minutes, no deadline: the latest runs, the 4 before it are missed.
    d = schedules.due(
        clock, last=last, now=t("2026-05-01T10:05:30+00:00"), anchor=ANCHOR, starting_deadline_seconds=None
    )
    assert (d.run_at, d.missed) == (t("2026-05-01T10:05:00+00:00"), 4)
    assert d.next_at == t("2026-05-01T10:06:00+00:00")
    # With a 40 s deadline: 10:05 is 30 s old, it runs; the 4 older ones are missed.
    d = schedules.due(
        clock, last=last, now=t("2026-05-01T10:05:30+00:00"), anchor=ANCHOR, starting_deadline_seconds=40
    )
    assert (d.run_at, d.missed) == (t("2026-05-01T10:05:00+00:00"), 4)
    # With a 20 s deadline: even the latest is too old; all 5 are missed, none runs.
    d = schedules.due(
        clock, last=last, now=t("2026-05-01T10:05:30+00:00"), anchor=ANCHOR, starting_deadline_seconds=20
    )
    assert (d.run_at, d.missed) == (None, 5)
    # On time: nothing missed.
    d = schedules.due(
        clock,
        last=last,
        now=t("2026-05-01T10:01:00.300+00:00"),
        anchor=ANCHOR,
        starting_deadline_seconds=None,
    )
    assert (d.run_at, d.missed) == (t("2026-05-01T10:01:00+00:00"), 0)
    # Nothing due yet.
    d = schedules.due(
        clock, last=last, now=t("2026-05-01T10:00:59+00:00"), anchor=ANCHOR, starting_deadline_seconds=None
    )
    assert (d.run_at, d.missed, d.next_at) == (None, 0, t("2026-05-01T10:01:00+00:00"))
    # More than 100 missed: counting stops, the latest still runs.
    d = schedules.due(
        clock, last=last, now=t("2026-05-01T13:00:10+00:00"), anchor=ANCHOR, starting_deadline_seconds=None
    )
    assert d.too_many and d.run_at == t("2026-05-01T13:00:00+00:00")


def test_a_run_is_named_by_its_time():
    at = t("2026-05-01T10:05:00+00:00")
    assert schedules.run_name("nightly", at) == "nightly-1777629900"
    assert schedules.run_name("nightly", at) == schedules.run_name(
        "nightly", at.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    )
