"""Per bench phase: CPU seconds of each process, and the apiserver requests the platform made.

Requests are apiserver_request_total before and after the phase, minus the bench's own
reads (LIST and WATCH, counted by ltclient.Clients); the bench's creates stay in, since a
create is part of what a task costs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import cputime
import probes

from longtask_dev import cluster as cluster_mod

QUIET_SECONDS = 5.0  # at most this long, a phase waits for the platform's last requests


@dataclass
class Recorder:
    c: cluster_mod.Cluster
    own: collections.Counter[str]  # the bench's own reads so far (Clients.own)
    cpu: cputime.Meter
    api: dict[str, tuple[int, probes.Counts]] = field(default_factory=dict)

    @classmethod
    def of(cls, c: cluster_mod.Cluster, own: collections.Counter[str]) -> Recorder:
        def pids() -> dict[str, int]:
            return {
                "bench (this process)": os.getpid(),
                **{ch.name: ch.pid for ch in c.children if ch.alive()},
            }

        return cls(c, own, cputime.Meter(pids, width=13))

    @contextlib.asynccontextmanager
    async def phase(self, name: str, *, tasks: int = 0) -> AsyncIterator[None]:
        """Meter CPU and requests of the platform while the body runs; afterwards, wait until
        requests on LongTasks and events stop (the operator may post Events late)."""
        before, own_before = await asyncio.to_thread(probes.api_requests, self.c), self.own.copy()
        with self.cpu.phase(name):
            yield
            after = await self.quiet()
        self.api[name] = (tasks, after - before - (self.own - own_before))

    async def quiet(self) -> probes.Counts:
        """apiserver_request_total once two reads 0.3 s apart agree on LongTasks and events."""
        last = await asyncio.to_thread(probes.api_requests, self.c)
        for _ in range(int(QUIET_SECONDS / 0.3)):
            await asyncio.sleep(0.3)
            now = await asyncio.to_thread(probes.api_requests, self.c)
            if probes.task_requests(now) == probes.task_requests(last):
                return now
            last = now
        return last

    def requests(self, name: str) -> probes.Counts:
        return self.api[name][1]

    def per_task(self) -> dict[str, tuple[int, probes.Counts]]:
        return {name: entry for name, entry in self.api.items() if entry[0]}
