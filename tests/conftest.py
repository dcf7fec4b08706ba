"""Shared fixtures: one embedded control plane + Redis per session, a namespace per test,
and the markers that split the suite into tiers.

The cluster and the platform are session-scoped because starting them costs seconds;
each test gets its own namespace so tests cannot see each other's LongTasks. A test that
needs Redis and nothing else gets a standalone redis-server instead (`redis_url`), so it
runs in the fast tier, without the Go-built control plane.

Markers are applied here from what a test uses, so nobody has to remember them: `cluster`
on every test that depends on the `cluster` fixture (directly or through `platform`,
`namespace`, `kubectl`...), `tools` on every test that depends on `go_tool`. A test that
starts a cluster or a bench of its own says `pytestmark = pytest.mark.cluster` itself; an
unmarked test that asks longtask_dev.binaries for a Go-built tool fails at once, so the
fast tier (hack/fast.sh: `-m "not cluster and not tools"`) never needs them.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from longtask_dev import binaries, procs
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


@pytest.fixture(scope="session")
def standalone_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of its own (the cluster's command line), on a free loopback port."""
    folder = tmp_path_factory.mktemp("redis")
    port = procs.free_port()
    child = cluster_mod.redis_child(port=port, data=folder / "data", log=folder / "redis.log").start()
    try:
        cluster_mod.wait_for_redis(port=port, child=child)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis this test talks to: the cluster's when the test uses the cluster (its
    operator and workers read that one), else the standalone one (no control plane)."""
    if "cluster" in request.fixturenames:
        return str(request.getfixturevalue("cluster").redis_url)
    return str(request.getfixturevalue("standalone_redis_url"))


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def go_tool() -> Callable[[str], Path]:
    """The path of a Go-built tool (helm, promtool), built first if missing (marks `tools`)."""

    def path(tool: str) -> Path:
        return binaries.ensure(tool)[tool]

    return path


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        if "cluster" in used:
            item.add_marker(pytest.mark.cluster)
        if "go_tool" in used:
            item.add_marker(pytest.mark.tools)


_GUARD = pytest.StashKey[pytest.MonkeyPatch]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """An unmarked test gets no Go-built binary: asking for one fails instead of building."""
    if item.get_closest_marker("cluster") or item.get_closest_marker("tools"):
        return

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(
            f"{item.nodeid} asked for a Go-built binary {args}: use the `cluster` or `go_tool`"
            " fixture (or mark it `cluster`) so that the fast tier leaves it out"
        )

    guard = item.stash[_GUARD] = pytest.MonkeyPatch()
    for name in ("ensure", "path", "bin_dir"):
        guard.setattr(binaries, name, refuse)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    guard = item.stash.get(_GUARD, None)
    if guard is not None:
        guard.undo()


def get_json(cluster: cluster_mod.Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
