"""Redis's primary SIGKILLed while tasks are submitted and running: the Sentinels promote the
replica, every component follows, no submission gets a 500 and every task succeeds.

Covers, on a cluster started like `longtask dev up --redis-ha` (a primary, one replica,
three Sentinels; the operator, the gateway and the WorkerPool's pods all pointed at the
Sentinels, the pods through the Secret longtask-redis): 150 tasks submitted through the
gateway one after another (with an Idempotency-Key each; a 503 is retried after its
Retry-After) while the earlier ones run on two worker pods; the primary is SIGKILLed once
a third are submitted and some have started, and the other two thirds are submitted from
that instant on; the replica is promoted; every submission is answered 202 in the end,
none ever 500; all 150 LongTasks end Succeeded; the operator counted the promoted replica
as a Redis reset (redisrepair.py). Prints the failover figures: the Sentinels' promotion, the
first task started after the primary died, and what the operator sent again.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from longtask_contracts import events, names
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from longtask_runtime import redisconn
from tests import helpers
from tests.drills import conftest as drills

pytestmark = pytest.mark.cluster

TASKS = 150
POOL = "default"


@pytest.fixture(scope="module")
def ha_cluster() -> Iterator[cluster_mod.Cluster]:
    with cluster_mod.Cluster(redis_ha=True) as c:
        yield c


@pytest.fixture(scope="module")
def ha_platform(ha_cluster: cluster_mod.Cluster) -> platform_mod.Platform:
    p = platform_mod.Platform(ha_cluster).start(workers=0)
    pool = platform_mod.worker_pool_manifests(
        pool=POOL,
        min_replicas=2,
        max_replicas=2,
        concurrency=4,
        namespace_selector={},
        grace_seconds=5,
        extra_env=drills.DRILL_ENV,
    )
    p.apply_worker_pool(pool)
    p.wait_workers_ready(pool[0]["metadata"]["name"], replicas=2)
    return p


class Submitter(threading.Thread):
    """Creates the tasks through the gateway, one after another, each until it is answered
    202 (created): a 503 (Redis failing over) or a 429 (the gateway's create rate limit) is
    retried after its Retry-After, with the same Idempotency-Key, so a create that happened
    before the answer is not made twice; any other answer is recorded."""

    def __init__(self, api: str, namespace: str) -> None:
        super().__init__(name="submitter", daemon=True)
        self.api = api
        self.namespace = namespace
        self.statuses: Counter[int] = Counter()
        self.retry_after: list[str] = []
        self.uids: dict[str, str] = {}
        self.failures: list[str] = []
        self.submitted = 0
        self.spans: list[tuple[float, float]] = []  # (began, answered) of each submission, Unix time
        # After the first third, the rest waits for this: the test sets it as it kills the
        # primary, so submissions are in flight during the failover however fast they went.
        self.go_on = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.api, timeout=120) as http:
            for i in range(TASKS):
                if i == TASKS // 3:
                    self.go_on.wait(timeout=300)
                began = time.time()
                try:
                    self._submit(http, f"f{i:03d}")
                    self.spans.append((began, time.time()))
                except Exception as exc:  # recorded: the test fails on it
                    self.failures.append(f"f{i:03d}: {type(exc).__name__}: {exc}")
                self.submitted += 1

    def _submit(self, http: httpx.Client, name: str) -> None:
        body = {
            "name": name,
            "spec": {"task": "demo.sleep", "params": {"seconds": 1, "steps": 2}, "pool": POOL},
        }
        key = str(uuid.uuid4())
        while True:
            answer = http.post(
                f"/v1/namespaces/{self.namespace}/tasks", json=body, headers={"Idempotency-Key": key}
            )
            self.statuses[answer.status_code] += 1
            if answer.status_code in (429, 503):  # the create rate limit, or Redis failing over
                self.retry_after.append(answer.headers.get("Retry-After", ""))
                time.sleep(float(answer.headers.get("Retry-After") or 1))
                continue
            if answer.status_code != 202:
                self.failures.append(f"{name}: {answer.status_code} {answer.text}")
                return
            self.uids[name] = answer.json()["uid"]
            return


def _starts_after(client: Any, uids: list[str], since: float) -> list[float]:
    """When each task's Started events after `since` happened (Unix time), from the events
    streams in the Redis the Sentinels name now."""
    found = []
    for uid in uids:
        for _, fields in client.xrange(names.events_stream(uid)):
            event = events.TaskEvent.decode(fields)
            if event.kind == events.Kind.STARTED and event.at > since:
                found.append(event.at)
    return sorted(found)


def _phases(ha_cluster: cluster_mod.Cluster, namespace: str) -> dict[str, str]:
    items = json.loads(ha_cluster.kubectl("get", "lt", "-n", namespace, "-o", "json").stdout)["items"]
    return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in items}


def test_primary_killed_while_submitting_and_running(ha_cluster, ha_platform):
    ha = ha_cluster.redis_ha
    assert ha is not None
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    ha_cluster.kubectl("create", "namespace", namespace)
    helpers.poll(
        lambda: ha_cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
        timeout=30,
        what="the namespace's ServiceAccount",
    )
    redis = redisconn.sync_client(
        redisconn.target(
            url=ha_cluster.redis_url,
            sentinels=ha.sentinels.split(","),
            master="longtask",
            sentinel_password="",
        )
    )
    submitter = Submitter(ha_platform.api_url, namespace)
    submitter.start()
    # Mid-way: a third submitted, and some of them started on the workers.
    helpers.poll(
        lambda: (
            submitter.submitted >= TASKS // 3
            and len(_starts_after(redis, list(submitter.uids.values()), 0)) >= 8
        ),
        timeout=180,
        what="a third of the tasks submitted and some started",
    )
    killed_at = time.time()
    began = time.monotonic()
    submitter.go_on.set()
    old = ha.kill_primary()
    new = ha.wait_failover(old=old, timeout=60)
    promoted = time.monotonic() - began
    promoted_at = time.time()
    submitter.join(timeout=600)
    assert not submitter.is_alive(), "the submissions did not end"
    first_start = _wait_first_start(redis, submitter, killed_at)
    # Submissions in flight while no primary answered (until the promotion was seen).
    during = [
        answered - began_
        for began_, answered in submitter.spans
        if began_ <= promoted_at and answered >= killed_at
    ]
    print(
        f"\nfailover: primary :{old} SIGKILLed; replica :{new} promoted after {promoted:.1f} s;"
        f" first task started {first_start - killed_at:.1f} s after the kill;"
        f" answers {dict(submitter.statuses)}, Retry-After {Counter(submitter.retry_after)};"
        f" {len(during)} submissions in flight during the failover, the longest answered in"
        f" {max(during, default=0):.1f} s"
    )
    assert not submitter.failures, submitter.failures
    assert during, "no submission was made while the primary was down: the drill proved nothing"
    assert submitter.statuses[500] == 0
    assert len(submitter.uids) == TASKS
    try:
        ha_cluster.kubectl(
            "wait",
            "-n",
            namespace,
            "lt",
            "--all",
            "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=300s",
        )
    except cluster_mod.KubectlError:
        stuck = {n: p for n, p in _phases(ha_cluster, namespace).items() if p != "Succeeded"}
        report = {n: _redis_state(redis, submitter.uids[n]) for n in sorted(stuck)}
        pytest.fail(f"{len(stuck)} tasks not Succeeded: {json.dumps(report, indent=1)}")
    finally:
        redis.close()
    assert set(_phases(ha_cluster, namespace).values()) == {"Succeeded"}
    # The operator saw the promoted replica as another server, and says what it sent again.
    repair = _metrics(ha_platform.operator_metrics_url, "longtask_operator_redis_re")
    print(f"operator after the failover: {repair}")
    assert repair.get('longtask_operator_redis_resets_total{cause="changed"}', 0) >= 1, repair


def _metrics(url: str, prefix: str) -> dict[str, float]:
    """The samples of the operator's /metrics whose names start with `prefix`."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and "_created{" not in line
    }


def _wait_first_start(redis: Any, submitter: Submitter, since: float) -> float:
    found: list[float] = []

    def started() -> bool:
        found[:] = _starts_after(redis, list(submitter.uids.values()), since)
        return bool(found)

    helpers.poll(started, timeout=120, what="a task started after the primary died")
    return found[0]


def _redis_state(redis: Any, uid: str) -> dict[str, Any]:
    """What Redis holds of a task that did not succeed: its events, its keys."""
    return {
        "events": [events.TaskEvent.decode(f).kind.value for _, f in redis.xrange(names.events_stream(uid))],
        "keys": sorted(k.decode() if isinstance(k, bytes) else k for k in redis.scan_iter(match=f"*{uid}*")),
    }
