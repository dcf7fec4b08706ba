"""prometheus-client's multiprocess mode for a component that runs as several processes (the
gateway's `--processes N`, the worker's prefork children): one directory of value files per
process tree, and a collector that reads them all.

Done the way prometheus-client's documentation asks:
- the directory is emptied by the tree's parent before any child starts (a restarted tree
  must not add its predecessor's counts twice), and PROMETHEUS_MULTIPROC_DIR points at it
  before prometheus_client is imported in a child (children are started after prepare());
- before every scrape the live-gauge files of processes that no longer run are swept
  (a child SIGKILLed never marks itself dead), so `live*` gauges count live processes only,
  while the counters and histograms of dead children keep counting, as they should.

It must not define metrics nor serve HTTP.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def prepare(*, component: str, path: Path | None = None) -> Path:
    """Create an empty directory for this process tree and point PROMETHEUS_MULTIPROC_DIR at it,
    for the children this process starts next: `path` when given, else one per parent pid under
    the temp directory (then the directories of parents that are gone are removed)."""
    if path is None:
        path = Path(tempfile.gettempdir()) / f"longtask-{component}-metrics" / str(os.getpid())
        for sibling in path.parent.glob("*"):
            if sibling.name.isdigit() and not alive(int(sibling.name)):
                shutil.rmtree(sibling, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[ENV] = str(path)
    return path


def current() -> Path | None:
    """The directory this process writes its values to, or None when not in multiprocess mode."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


class Collector:
    """MultiProcessCollector that first sweeps the live-gauge files of dead processes."""

    def __init__(self, path: Path) -> None:
        from prometheus_client import multiprocess

        self.path = path
        self._inner = multiprocess.MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Any]:
        sweep(self.path)
        samples: Iterable[Any] = self._inner.collect()  # type: ignore[no-untyped-call]
        return samples


def sweep(path: Path) -> list[int]:
    """mark_process_dead for every process with live-gauge files that no longer runs."""
    from prometheus_client import multiprocess

    dead = set()
    for file in path.glob("gauge_live*_*.db"):
        match = _LIVE_FILE.match(file.name)
        if match and not alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False
