"""A task whose status writes are refused for minutes keeps the status stream bounded.

Covers (issue 18, item 5): while a ValidatingAdmissionPolicy refuses every status write of
one LongTask ("stuck") for LONGTASK_DRILL_REFUSE_SECONDS (default 600, the issue's 10
minutes) and LONGTASK_DRILL_EVENTS (default 100,000) worker events flow through the status
stream, half of them the stuck task's:
- the stream stays bounded: its length (XLEN) and its pending count (XPENDING) never
  exceed the bounds below, sampled every second;
- every other task stays current: at every checkpoint (each tenth of the events) each one's
  status shows the last event published for it;
- the stuck task's folded state is held in Redis (names.STATUS_HELD) meanwhile, and its
  status shows its last event once the policy is gone.

The bounds, for an event rate R = EVENTS / REFUSE_SECONDS: the operator trims below the
oldest pending entry but keeps the last minute (statusstream._KEEP_RECENT_MS) and trims
every 5 s; an entry is pending until the write covering it lands (the coalescing interval,
1 s) or, for the stuck task, until its page is folded into its held record. With SLACK_SECONDS
(30 s) for the operator's read/write cycle on a loaded machine, one page (1,000 entries) and
a stream node (100):
    XLEN    <= R * (60 + 5 + 1 + SLACK_SECONDS) + 1,000 + 100
    pending <= R * (1 + SLACK_SECONDS) + 1,000
Before the fix the stuck task kept all its entries pending, so both grew with the events
(pending to EVENTS / 2). The bounds only tell the two apart once the flow lasts longer than
about 100 s: run it scaled down with at least LONGTASK_DRILL_REFUSE_SECONDS=180.

Measured on a 2-core machine shared with other work: the full size (600 s, 100,000 events)
takes 11 min 47 s in pytest, XLEN peaked at 10,802 (bound 17,100) and pending at 348
(bound 6,166); 180 s with 30,000 events: 10,241 and 320. The code before the fix failed the
180 s run after 12,288 events (6,231 pending).

The events are published as a worker publishes them (ledger.queue_publish: the task's own
stream and the status stream) for LongTasks sent to a pool no worker serves, so the drill
controls every event; the operator, Redis and the apiserver are the real ones.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from longtask_contracts import events, ledger, names
from tests import helpers, lt, policies

pytestmark = pytest.mark.cluster

REFUSE_SECONDS = float(os.environ.get("LONGTASK_DRILL_REFUSE_SECONDS", "600"))
EVENTS = int(os.environ.get("LONGTASK_DRILL_EVENTS", "100000"))
OTHERS = 20  # tasks whose statuses must stay current
CHECKPOINTS = 10
SLACK_SECONDS = 30.0
REFUSE_LABEL = "test.longtask.io/refuse-status"

RATE = EVENTS / REFUSE_SECONDS
XLEN_BOUND = int(RATE * (60 + 5 + 1 + SLACK_SECONDS)) + 1_000 + 100
PENDING_BOUND = int(RATE * (1 + SLACK_SECONDS)) + 1_000


def _create(kubectl, namespace: str, name: str, *, pool: str, labels: dict[str, str] | None = None) -> str:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"task": "demo.noop", "pool": pool, "timeoutSeconds": int(REFUSE_SECONDS) + 3600},
    }
    out = kubectl("create", "-n", namespace, "-f", "-", "-o", "json", input=json.dumps(body))
    return str(json.loads(out.stdout)["metadata"]["uid"])


def _messages(kubectl, namespace: str) -> dict[str, str | None]:
    listing = json.loads(kubectl("get", "lt", "-n", namespace, "-o", "json").stdout)
    return {o["metadata"]["name"]: (o.get("status") or {}).get("message") for o in listing["items"]}


@pytest.mark.timeout(REFUSE_SECONDS + 600)
def test_a_task_refused_for_minutes_keeps_the_status_stream_bounded(
    platform, kubectl, namespace, redis_client
):
    pool = f"nobody-{uuid.uuid4().hex[:6]}"  # no worker: every event after Queued is the drill's
    policy, manifests = policies.refusing(
        namespace=namespace, label=REFUSE_LABEL, operations=["UPDATE"], resource="longtasks/status"
    )
    kubectl("apply", "-f", "-", input=manifests)
    try:
        _create(kubectl, namespace, "probe", pool=f"{pool}-probe", labels={REFUSE_LABEL: "1"})
        policies.wait_in_force(kubectl, namespace=namespace, name="probe")
        uids = {"stuck": _create(kubectl, namespace, "stuck", pool=pool, labels={REFUSE_LABEL: "1"})}
        for i in range(OTHERS):
            uids[f"other-{i}"] = _create(kubectl, namespace, f"other-{i}", pool=pool)
        for name, uid in uids.items():  # each sent (its Queued published) before the flow
            helpers.poll(
                lambda uid=uid: redis_client.exists(names.current(uid)), timeout=60, what=f"{name} sent"
            )
        last = _flow(kubectl, namespace, redis_client, uids)
        assert (
            json.loads(redis_client.hget(names.STATUS_HELD, uids["stuck"]))["status"]["message"]
            == last["stuck"]
        )
        assert lt.status(kubectl, namespace, "stuck").get("message") is None, "refused all along"
    finally:
        policies.remove(kubectl, policy)
    helpers.poll(
        lambda: lt.status(kubectl, namespace, "stuck").get("message") == last["stuck"],
        timeout=120,
        what="the stuck task's status written once accepted",
    )
    helpers.poll(
        lambda: not redis_client.hexists(names.STATUS_HELD, uids["stuck"]), timeout=30, what="released"
    )


def _flow(kubectl, namespace: str, redis_client, uids: dict[str, str]) -> dict[str, str]:
    """Publish EVENTS progress events over REFUSE_SECONDS, half of them the stuck task's,
    checking the bounds every second and the other tasks' statuses at each checkpoint."""
    others = [name for name in uids if name != "stuck"]
    last: dict[str, str] = {}
    sent, most_len, most_pending = 0, 0, 0
    began = time.monotonic()
    checkpoint = EVENTS // CHECKPOINTS
    paused = 0.0  # time spent checking statuses, not publishing
    while sent < EVENTS:
        due = min(EVENTS, int(RATE * (time.monotonic() - began - paused)) + 1)
        pipe = redis_client.pipeline(transaction=False)
        while sent < due:
            name = "stuck" if sent % 2 == 0 else others[(sent // 2) % len(others)]
            last[name] = f"event {sent}"
            event = events.TaskEvent(
                kind=events.Kind.PROGRESS,
                namespace=namespace,
                name=name,
                uid=uids[name],
                attempt=1,
                progress=round(100 * sent / EVENTS, 2),
                message=last[name],
            )
            ledger.queue_publish(pipe, event)
            sent += 1
            if sent % checkpoint == 0:
                break
        pipe.execute()
        length = redis_client.xlen(names.STATUS_STREAM)
        pending = int(redis_client.xpending(names.STATUS_STREAM, names.STATUS_GROUP)["pending"])
        most_len, most_pending = max(most_len, length), max(most_pending, pending)
        assert length <= XLEN_BOUND, f"XLEN {length} > {XLEN_BOUND} after {sent} events"
        assert pending <= PENDING_BOUND, f"{pending} pending > {PENDING_BOUND} after {sent} events"
        if sent % checkpoint == 0:
            start = time.monotonic()
            want = {name: last[name] for name in others}
            helpers.poll(
                lambda want=want: (
                    {n: m for n, m in _messages(kubectl, namespace).items() if n in want} == want
                ),
                timeout=60,
                what=f"every other task current after {sent} events",
                interval=0.5,
            )
            paused += time.monotonic() - start
        else:
            time.sleep(1.0)
    print(
        f"{EVENTS} events over {time.monotonic() - began:.0f} s: XLEN at most {most_len} "
        f"(bound {XLEN_BOUND}), pending at most {most_pending} (bound {PENDING_BOUND})"
    )
    return last
