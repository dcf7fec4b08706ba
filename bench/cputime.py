"""CPU seconds used per platform process (with its descendants) during each bench phase.

Read from /proc (Linux only): utime + stime of each supervised child's live process tree,
so a Celery worker counts with its prefork children. This shows where a 2-core machine
spends its time, which wall-clock timestamps alone cannot. A process started (or
restarted) during a phase counts with all its CPU; one that ended during it, not at all.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def snapshot(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each root process and its live descendants, minus other roots' trees."""
    stats = {int(d): s for d in os.listdir("/proc") if d.isdigit() and (s := _stat(int(d)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    own = set(roots.values())
    result = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += stats[pid][1] if pid in stats else 0.0
            todo.extend(c for c in children.get(pid, []) if c not in own)
        result[name] = total
    return result


@dataclass
class Meter:
    """Records CPU seconds per process name for named phases."""

    pids: Callable[[], dict[str, int]]  # process name -> pid, read at each phase start and end
    phases: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    width: int = 18  # of a phase's column

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        pids = self.pids()
        before = snapshot(pids)
        began = time.monotonic()
        yield
        wall = time.monotonic() - began
        now = self.pids()
        after = snapshot(now)
        self.phases[name] = (
            wall,
            {n: after[n] - (before[n] if pids.get(n) == pid else 0.0) for n, pid in now.items()},
        )

    def report(self) -> list[str]:
        names = list(dict.fromkeys(n for _, cpu in self.phases.values() for n in cpu))
        w = self.width

        def row(label: str, values: list[float]) -> str:
            return f"  {label:<24}" + "".join(f"{v:>{w}.2f}" for v in values)

        header = f"  {'process':<24}" + "".join(f"{p:>{w}}" for p in self.phases)
        lines = ["CPU seconds per process and phase (2 cores: at most 2 s per wall second)", header]
        lines += [row(n, [cpu.get(n, 0.0) for _, cpu in self.phases.values()]) for n in names]
        lines.append(row("total", [sum(cpu.values()) for _, cpu in self.phases.values()]))
        lines.append(row("wall seconds", [wall for wall, _ in self.phases.values()]))
        return lines
