"""LongTaskSchedule: its spec, when its runs are due, and what its runs are named; pure.

A schedule is 5-field cron (minute hour day-of-month month day-of-week), a descriptor
(@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly) or `@every <duration>`
(Go's duration form, as robfig/cron takes it: 90s, 1h30m, 2h; at least 1 s), read in
spec.timeZone (an IANA name; default UTC). Cron fields are parsed by cronsim (a
maintained parser that follows Debian cron on daylight-saving changes: a time skipped by
a spring-forward runs at the first instant after the gap, a time repeated by a fall-back
runs once, at its first occurrence). `@every` counts from an anchor (the schedule's
creation), so a restart never shifts it.

A run is named from its scheduled time (run_name), so whoever creates it twice (a
restarted operator, a second one) gets AlreadyExists the second time: a run per time,
never two. Missed times follow Kubernetes CronJob's rule (missed()).

It must not do I/O: the operator's schedules.py reads clocks and the apiserver.
"""

from __future__ import annotations

import datetime
import enum
import re
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any

import cronsim
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from longtask_contracts import models

UTC = datetime.UTC
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
EVERY_MIN_SECONDS = 1
# Kubernetes CronJob gives up counting after this many missed times (and reports it).
MISSED_COUNT_MAX = 100
NAME_MAX = 52  # a schedule's name: its runs' names add "-" and 10 digits, its label 63 at most
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class InvalidSchedule(ValueError):
    """spec.schedule or spec.timeZone says something no clock can follow; the message says what."""


class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"  # runs may overlap
    FORBID = "Forbid"  # a due run is skipped while one is active
    REPLACE = "Replace"  # the active run is cancelled when the next one starts


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RunTemplate(_Model):
    """What each run is: a LongTask with these labels, annotations and spec."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: models.LongTaskSpec


class ScheduleSpec(_Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    schedule: Annotated[str, Field(min_length=1, max_length=256)]
    time_zone: Annotated[str, Field(max_length=64)] = "UTC"
    template: RunTemplate
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    suspend: bool = False
    starting_deadline_seconds: Annotated[int | None, Field(ge=0)] = None
    successful_runs_history_limit: Annotated[int, Field(ge=0, le=1000)] = 3
    failed_runs_history_limit: Annotated[int, Field(ge=0, le=1000)] = 1


@dataclass(frozen=True)
class Clock:
    """A parsed schedule in its time zone: cron fields, or a fixed interval from an anchor."""

    text: str
    zone: zoneinfo.ZoneInfo
    cron: str | None = None  # 5 fields
    every: int | None = None  # seconds

    def next_after(self, after: datetime.datetime, *, anchor: datetime.datetime) -> datetime.datetime:
        """The first scheduled time strictly after `after` (UTC, whole seconds)."""
        if self.every is not None:
            elapsed = (after - anchor).total_seconds()
            steps = int(elapsed // self.every) + 1 if elapsed >= 0 else 1
            return anchor + datetime.timedelta(seconds=steps * self.every)
        assert self.cron is not None
        local = after.astimezone(self.zone)
        due = next(cronsim.CronSim(self.cron, local))
        while due.astimezone(UTC) <= after:
            due = next(cronsim.CronSim(self.cron, due))
        return due.astimezone(UTC)

    def interval_hint(self, *, after: datetime.datetime, anchor: datetime.datetime) -> float:
        """Seconds between the next two times (what "N intervals" of an alert means)."""
        first = self.next_after(after, anchor=anchor)
        return (self.next_after(first, anchor=anchor) - first).total_seconds()


def parse(schedule: str, time_zone: str = "UTC") -> Clock:
    """The Clock of spec.schedule in spec.timeZone, or InvalidSchedule saying what is wrong."""
    try:
        zone = zoneinfo.ZoneInfo(time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"timeZone {time_zone!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
        ) from None
    text = " ".join(schedule.split())
    if text.startswith("@every"):
        return Clock(text=text, zone=zone, every=parse_every(text.removeprefix("@every").strip()))
    cron = DESCRIPTORS.get(text.lower(), text)
    if cron.startswith("@"):
        known = ", ".join([*DESCRIPTORS, "@every <duration>"])
        raise InvalidSchedule(f"schedule {schedule!r}: unknown descriptor (known: {known})")
    if "TZ=" in cron or "CRON_TZ=" in cron:
        raise InvalidSchedule(
            f"schedule {schedule!r}: give the time zone in spec.timeZone, not in the schedule"
        )
    if len(cron.split()) != 5:
        raise InvalidSchedule(
            f"schedule {schedule!r}: a cron schedule has 5 fields (minute hour day-of-month month "
            f"day-of-week), this has {len(cron.split())}"
        )
    try:
        next(cronsim.CronSim(cron, datetime.datetime(2000, 1, 1, tzinfo=zone)))
    except (cronsim.CronSimError, StopIteration) as exc:
        raise InvalidSchedule(f"schedule {schedule!r}: {exc}") from None
    return Clock(text=text, zone=zone, cron=cron)


def parse_every(duration: str) -> int:
    """Whole seconds of a Go duration ("90s", "1h30m"; parts of a second are dropped, as
    robfig/cron drops them), at least EVERY_MIN_SECONDS."""
    if not _DURATION.match(duration):
        raise InvalidSchedule(
            f"@every {duration!r}: give a duration such as 30s, 5m, 1h30m (units h, m, s, ms)"
        )
    seconds = int(sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration)))
    if seconds < EVERY_MIN_SECONDS:
        raise InvalidSchedule(f"@every {duration!r}: the interval must be at least {EVERY_MIN_SECONDS} s")
    return seconds


@dataclass(frozen=True)
class Due:
    """What is due at `now`: the time to run (None: nothing), and the times missed (not run)."""

    run_at: datetime.datetime | None
    missed: int
    too_many: bool = False  # more than MISSED_COUNT_MAX missed: counting stopped there
    next_at: datetime.datetime | None = None  # the first time after now


def due(
    clock: Clock,
    *,
    last: datetime.datetime,
    now: datetime.datetime,
    anchor: datetime.datetime,
    starting_deadline_seconds: int | None,
) -> Due:
    """Kubernetes CronJob's rule: of the times after `last` (the last scheduled time, or the
    schedule's creation) up to `now`, only the latest runs, and only if it is no older than
    starting_deadline_seconds; every other one is missed (counted, never run). Times older
    than the deadline are not looked at (so a long outage costs at most the deadline's
    worth of counting)."""
    since = last
    if starting_deadline_seconds is not None:
        since = max(since, now - datetime.timedelta(seconds=starting_deadline_seconds))
    times: list[datetime.datetime] = []
    t = clock.next_after(since, anchor=anchor)
    too_many = False
    while t <= now:
        times.append(t)
        if len(times) > MISSED_COUNT_MAX:
            too_many = True
            break
        t = clock.next_after(t, anchor=anchor)
    skipped_before = 0
    if starting_deadline_seconds is not None and since > last:
        skipped_before = _count_between(clock, last, since, anchor)
    if not times:
        return Due(run_at=None, missed=skipped_before, next_at=t)
    latest = times[-1] if not too_many else _latest_before(clock, now, anchor)
    missed = len(times) - 1 + skipped_before
    return Due(run_at=latest, missed=missed, too_many=too_many, next_at=clock.next_after(now, anchor=anchor))


def _count_between(
    clock: Clock, start: datetime.datetime, end: datetime.datetime, anchor: datetime.datetime
) -> int:
    count, t = 0, clock.next_after(start, anchor=anchor)
    while t <= end and count <= MISSED_COUNT_MAX:
        count += 1
        t = clock.next_after(t, anchor=anchor)
    return count


def _latest_before(clock: Clock, now: datetime.datetime, anchor: datetime.datetime) -> datetime.datetime:
    """The last time at or before `now` (found by stepping back a day at a time)."""
    back = now
    while True:
        back -= datetime.timedelta(days=1)
        t = clock.next_after(back, anchor=anchor)
        if t <= now:
            latest = t
            while (n := clock.next_after(latest, anchor=anchor)) <= now:
                latest = n
            return latest


def run_name(schedule_name: str, at: datetime.datetime) -> str:
    """The LongTask name of the run scheduled at `at`: the same time, the same name."""
    return f"{schedule_name}-{int(at.timestamp())}"
