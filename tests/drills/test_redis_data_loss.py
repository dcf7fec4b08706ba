"""Redis comes back with less data than it had (its AOF from a moment before), and no task is lost.

Covers, on the real platform (operator, workers, Redis with AOF), with the operator running
throughout: a copy of Redis' AOF is taken while tasks run; then more happens (tasks sent to
a pool with no worker yet and seen Queued in etcd, a task that ends Succeeded); Redis is
stopped and started again from the older copy, which lacks all that. Then:
- the operator finds the reset (longtask_operator_redis_resets_total), waits for the
  workers to take their leases back, and sends again the tasks whose every trace Redis lost
  (an Event `Resent` on each): they run once a worker for their pool comes;
- the tasks running across the restore keep running on their workers (their leases are
  taken back, not expired) and are not started again;
- the task that ended after the copy (Succeeded in etcd, running in the older Redis) is not
  run again, and one that ended before the copy (its done marker survived) neither;
- a task whose worker died after the copy (its lease lost, no worker to take it back): its
  attempt ends Retrying with RedisDataLost (not a crash) and a new attempt runs;
- every LongTask ends Succeeded, and no task ran twice at once (the workers' own log lines,
  which the restore cannot lose, give each run's start and end).
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from longtask_contracts import names
from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import helpers, lt

pytestmark = pytest.mark.cluster

RUN_POOL, LATER_POOL, VICTIM_POOL = "lossrun", "losslater", "lossvictim"
WORKER_ENV = {"LONGTASK_LEASE_SECONDS": "2", "LONGTASK_LOG_FORMAT": "json"}
GRACE_SECONDS = "4"  # the operator's wait after a reset: a few renewals of a 2 s lease


@pytest.fixture
def repairing_operator(platform: platform_mod.Platform) -> Iterator[None]:
    """The operator with a short grace (this drill's workers renew every 2/3 s); the
    session's usual operator again afterwards."""
    platform.kill_operator()
    platform.start_operator(extra_env={"LONGTASK_REDIS_REPAIR_GRACE_SECONDS": GRACE_SECONDS})
    yield
    platform.kill_operator()
    platform.start_operator()


def _worker(platform: platform_mod.Platform, pool: str) -> procs.Child:
    return platform.start_worker(pool=pool, concurrency=2, extra_env=WORKER_ENV)


def _runs(workers: list[procs.Child]) -> dict[str, list[tuple[str, str]]]:
    """Each uid's runs that claimed their attempt, (start, end) ISO times, from the workers' logs:
    a delivery its claim refused logs "ended: skipped"."""
    runs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for worker in workers:
        open_runs: dict[tuple[str, int, int], list[str]] = defaultdict(list)
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            uid, message = record.get("uid"), record.get("message", "")
            if not uid:
                continue
            key = (uid, int(record.get("attempt") or 0), int(record.get("process") or 0))
            if " starts on " in message:
                open_runs[key].append(record["time"])
            elif " ended: " in message and open_runs[key]:
                began = open_runs[key].pop(0)
                if not message.endswith("skipped"):
                    runs[uid].append((began, record["time"]))
    return runs


def _overlapping(runs: list[tuple[str, str]]) -> bool:
    ordered = sorted(runs)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _restart_from(cluster: cluster_mod.Cluster, copy: Path, *, meanwhile: Callable[[], None]) -> None:
    """Stop Redis (SIGTERM: it writes its AOF), do `meanwhile`, put the older AOF back, start
    it again."""
    child = cluster.child("redis")
    child.stop()
    meanwhile()
    aof = cluster.state_dir / "redis" / "appendonlydir"
    shutil.rmtree(aof)
    shutil.copytree(copy, aof)
    cluster_mod.wait_for_redis(port=cluster.redis_port, child=child.start())


def test_redis_back_with_older_data(
    platform, cluster, kubectl, namespace, redis_client, repairing_operator, tmp_path
):
    runners = [_worker(platform, RUN_POOL), _worker(platform, RUN_POOL)]  # 4 slots
    workers = list(runners)
    try:
        sleep = {"task": "demo.sleep", "pool": RUN_POOL}
        before = lt.create(kubectl, namespace, "before", **sleep, params={"seconds": 1, "steps": 2})
        lt.wait_phase(kubectl, namespace, "before", "Succeeded")
        long = [
            lt.create(kubectl, namespace, f"long{i}", **sleep, params={"seconds": 24, "steps": 24})
            for i in range(3)
        ]
        short = lt.create(kubectl, namespace, "short", **sleep, params={"seconds": 5, "steps": 5})
        victim = _worker(platform, VICTIM_POOL)
        workers.append(victim)
        orphan = lt.create(
            kubectl,
            namespace,
            "orphan",
            task="demo.sleep",
            pool=VICTIM_POOL,
            params={"seconds": 24, "steps": 24},
        )
        helpers.poll(
            lambda: all("started" in lt.kinds(redis_client, uid) for uid in [*long, short, orphan]),
            timeout=60,
            what="the long tasks and the short one running",
        )
        copy = tmp_path / "aof"
        shutil.copytree(cluster.state_dir / "redis" / "appendonlydir", copy)  # the older data
        later = [
            lt.create(
                kubectl, namespace, f"later{i}", task="demo.sleep", pool=LATER_POOL, params={"seconds": 1}
            )
            for i in range(3)
        ]
        for i in range(3):
            lt.wait_phase(kubectl, namespace, f"later{i}", "Queued")  # the operator sent them
        lt.wait_phase(kubectl, namespace, "short", "Succeeded")
        resets = _metric(platform.operator_metrics_url, "longtask_operator_redis_resets_total")

        def kill_victim() -> None:
            """Its worker dies while Redis is down: no one takes the orphan's lease back."""
            victim.kill()
            cluster.children.remove(victim)

        _restart_from(cluster, copy, meanwhile=kill_victim)
        restored = time.monotonic()
        assert all(not redis_client.exists(names.current(uid)) for uid in later), "lost with the restore"
        assert redis_client.exists(names.done(before)), "its end was in the older data"

        workers.append(_worker(platform, LATER_POOL))
        workers.append(_worker(platform, VICTIM_POOL))
        kubectl(
            "wait",
            "-n",
            namespace,
            "lt",
            "--all",
            "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=180s",
        )
        print(f"\nall LongTasks Succeeded {time.monotonic() - restored:.1f} s after Redis came back")
        assert _metric(platform.operator_metrics_url, "longtask_operator_redis_resets_total") > resets
        runs = _runs(workers)
        for uid in [before, short, *long, *later, orphan]:
            assert len(runs[uid]) == 1, (uid, runs[uid])  # the orphan's first run never ended
        for uid, spans in runs.items():
            assert not _overlapping(spans), (uid, spans)
        for i in range(3):
            status = lt.status(kubectl, namespace, f"long{i}")
            assert [h["attempt"] for h in status.get("attemptHistory", [])] == [1], status
        history = lt.status(kubectl, namespace, "orphan")["attemptHistory"]
        assert [(h["attempt"], h.get("outcome")) for h in history] == [(1, "Retrying"), (2, "Succeeded")], (
            history
        )
        assert history[0]["error"]["type"] == "RedisDataLost", "not counted as a crash"
        events = kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=Resent", "-o", "json"
        ).stdout
        resent = {e["involvedObject"]["name"] for e in json.loads(events)["items"]}
        assert resent == {"orphan", *(f"later{i}" for i in range(3))}, resent
        assert (
            _metric(platform.operator_metrics_url, 'longtask_operator_redis_resent_total{kind="first"}') >= 3
        )
    finally:
        for worker in workers:
            if worker in cluster.children:
                platform.stop_child(worker)
        kubectl("delete", "lt", "--all", "-n", namespace, "--wait=false", check=False)
