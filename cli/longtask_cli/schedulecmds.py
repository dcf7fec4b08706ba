"""The `schedule` commands (`list`, `trigger`, `suspend`, `resume`): LongTaskSchedules through
the gateway and their printing. It must not start components nor talk to Kubernetes: the
gateway says what each schedule is, and decides who may do what."""

from __future__ import annotations

import argparse
import json
from typing import Any

from longtask_cli import taskcmds

NONE = "-"  # a time not known (yet): a next run the operator has not written, no run so far
HEADER = (
    f"{'NAME':<32} {'SCHEDULE':<16} {'TIMEZONE':<16} {'SUSPEND':<7}  {'NEXT RUN':<20}  "
    f"{'LAST RUN':<20}  PHASE"
)


def _path(args: argparse.Namespace, rest: str = "") -> str:
    return f"/v1/namespaces/{args.namespace}/schedules{rest}"


def row(schedule: dict[str, Any]) -> str:
    """One table line: the schedule, its next run, its newest run's creation and phase."""
    runs = schedule.get("runs") or []
    last = runs[0] if runs else {}
    return (
        f"{schedule['name']:<32} {schedule['schedule']:<16} {schedule.get('timeZone') or 'UTC':<16} "
        f"{str(bool(schedule.get('suspend'))).lower():<7}  {schedule.get('nextScheduleTime') or NONE:<20}  "
        f"{last.get('createdAt') or NONE:<20}  {last.get('phase') or NONE}"
    ).rstrip()


def list_schedules(args: argparse.Namespace) -> int:
    body = taskcmds.ask(args, "GET", _path(args), params={"runs": 1 if args.output == "table" else 5})
    if body is None:
        return taskcmds.EXIT_FAILED
    if args.output == "json":
        print(json.dumps(body["items"], indent=2))
        return taskcmds.EXIT_SUCCEEDED
    print(HEADER)
    for schedule in body["items"]:
        print(row(schedule))
    return taskcmds.EXIT_SUCCEEDED


def trigger(args: argparse.Namespace) -> int:
    """Create a run now (--watch: then follow it, exiting as `watch` does)."""
    created = taskcmds.ask(args, "POST", _path(args, f"/{args.name}/trigger"))
    if created is None:
        return taskcmds.EXIT_FAILED
    print(f"triggered {args.namespace}/{args.name}: created {args.namespace}/{created['name']}", flush=True)
    if not args.watch:
        return taskcmds.EXIT_SUCCEEDED
    args.name = created["name"]
    return taskcmds.watch(args)


def _suspend(args: argparse.Namespace, *, verb: str, done: str) -> int:
    body = taskcmds.ask(args, "POST", _path(args, f"/{args.name}/{verb}"))
    if body is None:
        return taskcmds.EXIT_FAILED
    print(f"{done} {args.namespace}/{args.name} (suspend: {str(bool(body.get('suspend'))).lower()})")
    return taskcmds.EXIT_SUCCEEDED


def suspend(args: argparse.Namespace) -> int:
    return _suspend(args, verb="suspend", done="suspended")


def resume(args: argparse.Namespace) -> int:
    return _suspend(args, verb="resume", done="resumed")
