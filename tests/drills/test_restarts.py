"""Redis (AOF on) and the apiserver restarting mid-run lose no task and run none twice.

Covers: 20 tasks in flight on the default pool; Redis is restarted, then the apiserver;
the operator, the workers and the gateway reconnect by themselves; all 20 end Succeeded,
each started exactly once.
"""

from __future__ import annotations

import pytest

from tests import helpers, lt

pytestmark = pytest.mark.cluster


def test_redis_then_apiserver_restart_mid_run(platform, cluster, kubectl, namespace, redis_client):
    uids = [
        lt.create(kubectl, namespace, f"r{i:02d}", task="demo.sleep", params={"seconds": 2, "steps": 4})
        for i in range(20)
    ]
    helpers.poll(
        lambda: (
            sum(bool(lt.kinds(redis_client, u)) and "started" in lt.kinds(redis_client, u) for u in uids) >= 2
        ),
        timeout=60,
        what="some tasks running",
    )
    cluster.restart_redis()
    helpers.poll(
        lambda: sum("succeeded" in lt.kinds(redis_client, u) for u in uids) >= 4,
        timeout=90,
        what="tasks finishing after the Redis restart",
    )
    cluster.restart_apiserver()
    kubectl(
        "wait", "-n", namespace, "lt", "--all", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=300s"
    )
    for uid in uids:
        assert lt.starts(redis_client, uid) == 1, lt.kinds(redis_client, uid)
