"""A worker killed after fetching a message and before claiming its attempt loses nothing.

Covers: the worker's pool processes are frozen, so the message it fetches is never claimed;
the worker is then SIGKILLed, leaving the message unacknowledged (Redis would hand it back
only after its 7-day visibility timeout). The operator sees an attempt fetched and never
claimed, sends it again, and a new worker runs it: Succeeded, attempt 1, started once.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from longtask_contracts import names
from tests import helpers, lt, pools

pytestmark = pytest.mark.cluster


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _fetched(redis_client, uid: str) -> bool:
    for raw in redis_client.hvals(names.KOMBU_UNACKED):
        if json.loads(raw)[0]["headers"]["id"].startswith(uid):
            return True
    return False


def test_worker_killed_between_fetch_and_claim(platform, cluster, kubectl, namespace, redis_client):
    pool = pools.unique_pool()
    worker = platform.start_worker(pool=pool, concurrency=1)
    children = helpers.poll(lambda: _children(worker.pid), timeout=30, what="the worker's pool process")
    for child in children:
        os.kill(child, signal.SIGSTOP)  # it can take the task from its parent, never run it
    uid = lt.create(kubectl, namespace, "orphan", task="demo.noop", pool=pool)
    helpers.poll(lambda: _fetched(redis_client, uid), timeout=30, what="the worker to fetch the message")
    assert not redis_client.exists(names.claim(uid)) and not redis_client.exists(names.started(uid))
    worker.kill()
    cluster.children.remove(worker)
    for child in children:
        helpers.poll(
            lambda child=child: not helpers.process_alive(child), timeout=30, what="pool process gone"
        )

    replacement = platform.start_worker(pool=pool, concurrency=1)
    try:
        status = lt.wait_phase(kubectl, namespace, "orphan", "Succeeded", timeout=90)
    finally:
        platform.stop_child(replacement)
    assert status["attempts"] == 1
    assert lt.starts(redis_client, uid) == 1
    assert not _fetched(redis_client, uid), "the orphaned delivery is gone"
