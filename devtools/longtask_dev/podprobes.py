"""Readiness and liveness probes of one container: when they are due and what they found.

httpGet and tcpSocket probes go to 127.0.0.1 (pods share the host's network); exec probes
count as passing. It must not signal processes or call the API: the pod worker acts on
what step() returns.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Any

from longtask_dev import podhost, podspec

HOST_IP = podhost.HOST_IP


def check(probe: podspec.Probe) -> bool:
    """One probe: an HTTP status 200-399, or a TCP connection accepted, within its timeout."""
    try:
        if probe.kind == "tcp":
            socket.create_connection((HOST_IP, probe.port), timeout=probe.timeout).close()
        elif probe.kind == "http":
            conn = http.client.HTTPConnection(HOST_IP, probe.port, timeout=probe.timeout)
            try:
                conn.request("GET", probe.path, headers=probe.headers)
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        return True
    except (OSError, http.client.HTTPException):
        return False


@dataclass
class Prober:
    """The probes of one run of a container (a restarted container gets a new Prober)."""

    readiness: podspec.Probe | None
    liveness: podspec.Probe | None
    started: float
    ready: bool = False
    next_ready: float = 0.0
    next_live: float = 0.0
    successes: int = 0
    failures: int = 0
    live_failures: int = 0

    @classmethod
    def for_container(cls, container: dict[str, Any], *, now: float) -> Prober:
        readiness = podspec.probe(container, "readinessProbe")
        liveness = podspec.probe(container, "livenessProbe")
        prober = cls(readiness, liveness, now, ready=readiness is None)
        prober.next_ready = now + (readiness.initial_delay if readiness else 0)
        prober.next_live = now + (liveness.initial_delay if liveness else 0)
        return prober

    def step(self, now: float) -> str | None:
        """Run the probes that are due: "unready" when readiness was just lost, "unhealthy"
        when liveness failed failureThreshold times in a row, else None."""
        finding = None
        probe = self.readiness
        if probe is not None and self.next_ready <= now:
            if check(probe):
                self.successes, self.failures = self.successes + 1, 0
            else:
                self.successes, self.failures = 0, self.failures + 1
            if self.successes >= probe.success_threshold:
                self.ready = True
            elif self.failures >= probe.failure_threshold and self.ready:
                self.ready, finding = False, "unready"
            # Until the first success, probe every second at most: pods become Ready sooner.
            self.next_ready = now + (probe.period if self.ready else min(probe.period, 1.0))
        live = self.liveness
        if live is not None and self.next_live <= now:
            self.live_failures = 0 if check(live) else self.live_failures + 1
            self.next_live = now + live.period
            if self.live_failures >= live.failure_threshold:
                self.live_failures, finding = 0, "unhealthy"
        return finding
