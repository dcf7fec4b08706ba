"""examples/nightly-refresh.yaml is a valid schedule that runs when its comments say.

Covers: the example's spec is a ScheduleSpec whose template is a docs.embed LongTask spec
over a directory; its clock runs at 02:00 Europe/Berlin, that is 01:00 UTC in winter and
00:00 UTC in summer, at 03:00 CEST on the night the clocks go forward, once on the night
they go back; its interval (what LongTaskScheduleNotSucceeding counts in) is a day.
That the apiserver accepts it and that a run of it embeds a folder is in
tests/e2e/test_nightly_refresh_example.py.
"""

from __future__ import annotations

import datetime

import yaml

from longtask_contracts import names, schedules
from longtask_dev import binaries

EXAMPLE = binaries.REPO_ROOT / "examples" / "nightly-refresh.yaml"
UTC = datetime.UTC


def _spec() -> schedules.ScheduleSpec:
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert doc["kind"] == names.SCHEDULE_KIND and doc["apiVersion"] == names.API_VERSION
    return schedules.ScheduleSpec.model_validate(doc["spec"])


def _at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_example_is_a_docs_embed_schedule_over_a_directory() -> None:
    spec = _spec()
    assert (spec.schedule, spec.time_zone) == ("0 2 * * *", "Europe/Berlin")
    assert spec.concurrency_policy is schedules.ConcurrencyPolicy.FORBID
    task = spec.template.spec
    assert task.task == "docs.embed" and task.params["directory"] == "knowledge-base"
    assert not task.items


def test_it_runs_at_two_in_berlin_across_both_clock_changes() -> None:
    spec = _spec()
    clock = schedules.parse(spec.schedule, spec.time_zone)
    anchor = _at("2026-01-01T00:00:00")
    cases = {
        "2026-01-15T12:00:00": "2026-01-16T01:00:00",  # CET: 02:00 is 01:00 UTC
        "2026-07-15T12:00:00": "2026-07-16T00:00:00",  # CEST: 02:00 is 00:00 UTC
        "2026-03-28T12:00:00": "2026-03-29T01:00:00",  # 02:00 skipped: 03:00 CEST
        "2026-10-24T12:00:00": "2026-10-25T00:00:00",  # 02:00 twice: the first (CEST)
        "2026-10-25T00:00:00": "2026-10-26T01:00:00",  # ... and not the second one
    }
    for after, expected in cases.items():
        assert clock.next_after(_at(after), anchor=anchor) == _at(expected), after
    assert clock.interval_hint(after=_at("2026-01-15T12:00:00"), anchor=anchor) == 86400
