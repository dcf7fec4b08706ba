"""Shared fixtures: one embedded control plane + Redis per session, a namespace per test.

The cluster and the platform are session-scoped because starting them costs seconds;
each test gets its own namespace so tests cannot see each other's LongTasks.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from longtask_dev import cluster as cluster_mod
from longtask_dev import platform as platform_mod
from tests import helpers


@pytest.fixture(scope="session")
def cluster() -> Iterator[cluster_mod.Cluster]:
    with cluster_mod.Cluster() as c:
        yield c


@pytest.fixture(scope="session")
def platform(cluster: cluster_mod.Cluster) -> platform_mod.Platform:
    return platform_mod.Platform(cluster).start(workers=1)


@pytest.fixture
def kubectl(cluster: cluster_mod.Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(*args, input=input, check=check)

    return run


@pytest.fixture
def namespace(cluster: cluster_mod.Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    # The ServiceAccount admission plugin refuses pods until the namespace's `default`
    # ServiceAccount exists (the controller manager creates it within moments).
    helpers.poll(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what=f"the default ServiceAccount of {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def redis_client(cluster: cluster_mod.Cluster) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    yield client
    client.close()


def get_json(cluster: cluster_mod.Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
