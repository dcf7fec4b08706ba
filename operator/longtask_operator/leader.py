"""Leader election of the operator on a coordination.k8s.io/v1 Lease: the elector loop.

Of several operators of one scope, the one holding the Lease runs every loop that must run
once (handlers.py starts them when `run` says so); the others wait as standbys, watching
the Lease (a renewal or a release is seen as it is written) and looking at it at the
instant it would expire and at least every retry period. The rules (who may take the
Lease, when a leader must stop) are leadership.py's, client-go's; the calls are
kube.py's. Why our own elector: Kopf's peering elects nothing on a Lease (it pauses
operators through its own KopfPeering objects, by priority, and the chart would have to
install them), and the official client's leaderelection is synchronous and runs in a
thread of its own, while every call of the operator is on its asyncio loop; the rules
fit in a page.

A leader that cannot renew within the renew deadline, or finds the Lease taken, exits the
process at once (LOST_EXIT_CODE) rather than stopping its loops one by one: every loop
holds state (the autoscaler's history, the status stream's pages, sends in flight) that a
later term must not inherit, and a process that ends writes nothing more, whatever await it
was in. Kubernetes restarts the container, which comes back as a standby. On a clean stop
(SIGTERM) handlers.py stops the loops first, then `release` gives the Lease up, so a
standby takes over at its next look.

It must not start or stop the loops itself, nor talk to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtask_operator import kube, leadership, loopguard, metrics
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)

LOOP = "leader-election"  # the loop's name (its asyncio task, its Guard, /healthz)
LOST_EXIT_CODE = 3  # the process's exit status when it stops leading
# Where a pod finds its own namespace (the ServiceAccount's projected volume).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Timing:
    lease_seconds: int  # a candidate takes an unrenewed Lease this long after it last changed
    renew_deadline: float  # a leader that has not renewed for this long stops leading
    retry: float  # between renewals, and between a standby's looks


def lease_namespace(configured: str) -> str:
    """The Lease's namespace: as configured, else the pod's own (in a cluster), else default."""
    if configured:
        return configured
    try:
        return POD_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def exit_now(reason: str) -> None:
    """Stop leading by ending the process at once (see the module's docstring)."""
    log.critical(
        "%s: exiting now so that no loop of this operator acts any more; restarted, it is a standby", reason
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(LOST_EXIT_CODE)


class Elector:
    """Takes the Lease `namespace/name` for `identity` when it may, calls `on_leading` once it
    holds it, then renews it every retry period; calls `on_lost` (by default: exit_now) once
    it no longer may lead."""

    def __init__(
        self,
        *,
        kube: kube.Kube,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        on_leading: Callable[[], None],
        on_lost: Callable[[str], None] = exit_now,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_leading = on_leading
        self.on_lost = on_lost
        self.guard = loopguard.Guard(LOOP, first_delay=timing.retry)
        self.leading = False
        self._seen: leadership.Seen | None = None
        self._renewed_at = 0.0  # monotonic start of the last successful write of ourselves
        self._holder_logged: str | None = None
        self._changed = asyncio.Event()  # the watch saw the Lease change (a standby's wake-up)
        self._looked = asyncio.Event()  # the Lease has been read (or written) once
        self._metric = metrics.LEADER.labels(identity=identity, lease=f"{namespace}/{name}")
        self._metric.set(0)

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def run(self) -> None:
        """Wait as a standby until the Lease is ours, lead, and renew it until that fails."""
        log.info("leader election: candidate %r for the Lease %s", self.identity, self.lease)
        await self._acquire()
        self.leading = True
        self._metric.set(1)
        log.info("leader election: %r leads (Lease %s); starting the loops", self.identity, self.lease)
        self.on_leading()
        reason = await self._keep()
        self.leading = False
        self._metric.set(0)
        self.on_lost(f"leader election: {self.identity!r} lost the Lease {self.lease} ({reason})")

    async def release(self) -> None:
        """Give the Lease up after the loops stopped (a clean stop), only if it is still ours
        (see _release); a failure is logged (the Lease then expires as after a crash). The
        caller has stopped `run` first."""
        if not self.leading or self._seen is None:
            return
        self.leading = False
        self._metric.set(0)
        try:
            async with asyncio.timeout(self.timing.renew_deadline):
                await self._release()
        except Exception as exc:  # the Lease expires instead: a takeover is late, not unsafe
            log.warning(
                "leader election: could not release the Lease %s (%s: %s)",
                self.lease,
                type(exc).__name__,
                exc,
            )
            return
        log.info("leader election: %r released the Lease %s", self.identity, self.lease)

    async def _release(self) -> None:
        """Write the release over the Lease as we last saw it; if it changed since (a renewal
        of ours whose reply the stop cut off), read it, and release it if we still hold it."""
        assert self._seen is not None
        try:
            await self.kube.write_lease(
                namespace=self.namespace,
                name=self.name,
                resource_version=self._seen.version,
                spec=leadership.released(self._seen.record, wall=_wall()),
            )
            return
        except kubeerrors.Conflict:
            lease = await self.kube.get_lease(namespace=self.namespace, name=self.name)
        if lease is None or leadership.Record.of(lease).holder != self.identity:
            raise kubeerrors.Conflict("the Lease is no longer ours", what=f"lease {self.lease}")
        await self.kube.write_lease(
            namespace=self.namespace,
            name=self.name,
            resource_version=str(lease["metadata"]["resourceVersion"]),
            spec=leadership.released(leadership.Record.of(lease), wall=_wall()),
        )

    # -- standby -------------------------------------------------------------------------
    async def _acquire(self) -> None:
        """Look at the Lease until we have written ourselves into it: at once when the watch
        shows a change (a release), at the instant it expires on our clock, and at least
        every retry period (should the watch fail)."""
        follower = asyncio.create_task(self._follow(), name=f"{LOOP} watch")
        try:
            while True:
                self._changed.clear()
                try:
                    if await self._try():
                        self.guard.succeeded()
                        return
                    self.guard.succeeded()
                except Exception as exc:
                    if not loopguard.is_transient(exc):
                        await asyncio.sleep(self.guard.failed(exc))
                        continue
                    self.guard.item_failed(exc, what=f"reading the Lease {self.lease} failed; next look soon")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=self._next_look())
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    def _next_look(self) -> float:
        """Seconds until the next look: the retry period, or less if the Lease expires sooner."""
        if self._seen is None or not self._seen.record.holder:
            return self.timing.retry
        expires = self._seen.since + self._seen.record.duration_seconds - time.monotonic()
        return max(0.0, min(self.timing.retry, expires))

    async def _follow(self) -> None:
        """A standby's watch of the Lease: each change is seen the moment it is written, so
        expiry counts from the holder's last renewal itself (not up to a retry period later)
        and a release is taken at once. A failed watch only costs that precision: the looks
        every retry period go on."""
        while True:
            await self._looked.wait()  # a version to watch from: the first look's
            assert self._seen is not None
            version = self._seen.version
            try:
                async for kind, obj in self.kube.lease_changes(
                    namespace=self.namespace, name=self.name, resource_version=version
                ):
                    if kind in ("ADDED", "MODIFIED"):
                        self._saw(obj, now=time.monotonic())
                    if kind != "BOOKMARK":
                        self._changed.set()
            except Exception as exc:  # Expired, the apiserver away: watch again from what a look saw
                self.guard.item_failed(
                    exc, what=f"the watch of the Lease {self.lease} failed; watching again"
                )
                await asyncio.sleep(self.timing.retry)

    async def _try(self) -> bool:
        """Read the Lease and take (or renew) it if leadership.may_take says we may; whether
        it is ours now. A write that loses a race (409) is no error: someone else holds it."""
        started = time.monotonic()
        lease = await self.kube.get_lease(namespace=self.namespace, name=self.name)
        now = time.monotonic()
        try:
            if lease is None:
                written = await self.kube.create_lease(
                    namespace=self.namespace, name=self.name, spec=self._held(None)
                )
            else:
                self._saw(lease, now=now)
                assert self._seen is not None
                if not leadership.may_take(self._seen, identity=self.identity, now=now):
                    self._log_holder(self._seen.record)
                    return False
                written = await self._write_over_seen()
        except kubeerrors.Conflict:
            return False  # another candidate wrote it first: read it again next time
        self._holds(written, started=started)
        return True

    # -- leader --------------------------------------------------------------------------
    async def _keep(self) -> str:
        """Renew every retry period; returns why we may no longer lead."""
        while True:
            await asyncio.sleep(self.timing.retry)
            while True:
                now = time.monotonic()
                if leadership.must_stop(
                    renewed_at=self._renewed_at, now=now, renew_deadline=self.timing.renew_deadline
                ):
                    return f"not renewed for {now - self._renewed_at:.1f} s"
                try:
                    async with asyncio.timeout(self._renewed_at + self.timing.renew_deadline - now):
                        renewed = await self._renew()
                except TimeoutError:
                    continue  # the deadline passed: must_stop says so above
                except Exception as exc:
                    self.guard.item_failed(exc, what=f"renewing the Lease {self.lease} failed; retrying")
                    await asyncio.sleep(min(self.timing.retry, max(0.0, self._remaining())))
                    continue
                if not renewed:
                    assert self._seen is not None
                    return f"it is held by {self._seen.record.holder or 'nobody'!r}"
                self.guard.succeeded()
                break

    async def _renew(self) -> bool:
        """Write ourselves into the Lease as we last saw it (one request); if it changed
        meanwhile (409), read it and decide again (a label someone added is no loss)."""
        started = time.monotonic()
        try:
            written = await self._write_over_seen()
        except kubeerrors.Conflict:
            return await self._try()
        self._holds(written, started=started)
        return True

    async def _write_over_seen(self) -> Any:
        """Write ourselves as holder over the Lease as last seen (409 if it changed since)."""
        assert self._seen is not None
        return await self.kube.write_lease(
            namespace=self.namespace,
            name=self.name,
            resource_version=self._seen.version,
            spec=self._held(self._seen.record),
        )

    def _holds(self, written: Any, *, started: float) -> None:
        """Our write of the Lease, begun at `started` (monotonic), went through."""
        self._saw(written, now=time.monotonic())
        self._renewed_at = started

    def _remaining(self) -> float:
        return self._renewed_at + self.timing.renew_deadline - time.monotonic()

    # -- helpers -------------------------------------------------------------------------
    def _held(self, previous: leadership.Record | None) -> dict[str, Any]:
        return leadership.held(
            previous, identity=self.identity, duration_seconds=self.timing.lease_seconds, wall=_wall()
        )

    def _saw(self, lease: dict[str, Any], *, now: float) -> None:
        self._looked.set()
        self._seen = leadership.seen(
            self._seen,
            record=leadership.Record.of(lease),
            version=str(lease["metadata"]["resourceVersion"]),
            now=now,
        )

    def _log_holder(self, record: leadership.Record) -> None:
        if record.holder != self._holder_logged:
            self._holder_logged = record.holder
            log.info(
                "leader election: standby; the Lease %s is held by %r (taken over once released, or "
                "%d s after its last renewal)",
                self.lease,
                record.holder,
                record.duration_seconds,
            )


def _wall() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
