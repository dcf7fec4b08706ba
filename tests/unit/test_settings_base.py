"""The settings base every component builds on (longtask_runtime.settings) and the three
component classes on it.

Covers: fields are read from LONGTASK_<NAME>, case-insensitively, and unknown LONGTASK_
variables are ignored; redis_url comes from REDIS_URL (never LONGTASK_REDIS_URL) in every
component; comma-separated lists (LONGTASK_CORS_ORIGINS, LONGTASK_NAMESPACES,
LONGTASK_TASK_MODULES) are split, stripped and freed of empty items, from the environment
and from keyword arguments alike; with no variable set, every default is what it was before
the base existed; a value outside a field's bounds is refused.
"""

from __future__ import annotations

import os
import socket

import pydantic
import pytest

from longtask_api import settings as api_settings
from longtask_operator import settings as operator_settings
from longtask_runtime import celeryconfig, settings
from longtask_worker import settings as worker_settings

CLASSES = (api_settings.ApiSettings, operator_settings.OperatorSettings, worker_settings.WorkerSettings)
REDIS = "redis://127.0.0.1:6379/0"
# The defaults of the three flat classes the base replaced, copied from them.
BEFORE = {
    api_settings.ApiSettings: {
        "redis_url": REDIS,
        "redis_sentinels": [],  # new: Redis through Sentinels (off)
        "redis_master": "longtask",
        "redis_sentinel_password": "",
        "sse_ping_seconds": 15.0,
        "sse_block_ms": 5000,
        "max_body_bytes": 256 * 1024,
        "max_batch_body_bytes": 64 * 1024 * 1024,
        "max_batch_items": 100_000,
        "redis_max_connections": 512,
        "watcher_queue_size": 1000,
        "batch_event_seconds": 0.5,
        "streams_per_caller": 100,
        "auth": True,
        "auth_cache_seconds": 10.0,
        "auth_cache_size": 10_000,
        "auth_review_rate_per_second": 5.0,
        "auth_review_burst": 50,
        "auth_reviews_at_once": 8,
        "kube_timeout_seconds": 10.0,
        "create_rate_per_second": 10.0,
        "create_burst": 100,
        "gateway_dispatch": True,
        "idempotency_seconds": 86_400,
        "cors_origins": [],
        "gateway_processes": 1,
        "profile_file": "",
    },
    operator_settings.OperatorSettings: {
        "redis_url": REDIS,
        "redis_sentinels": [],  # new: Redis through Sentinels (off)
        "redis_master": "longtask",
        "redis_sentinel_password": "",
        "status_interval_seconds": 1.0,
        "status_writers": 64,
        "consumer": socket.gethostname(),
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "metrics_interval_seconds": 1.0,
        "health_port": 0,
        "health_host": "127.0.0.1",
        "maintenance_tick_seconds": 0.5,
        "namespaces": [],  # was the string "", whose namespace_list() was []
        "sweep_seconds": 15.0,
        "autoscale_interval_seconds": 1.0,
        "pool_status_interval_seconds": 15.0,  # new: count-only WorkerPool status writes
        "claim_timeout_seconds": 15.0,
        "poison_crashes": 3,
        "redis_repair_grace_seconds": 20.0,  # new: the wait after a Redis reset
        "kube_timeout_seconds": 15.0,  # new: the operator's apiserver timeout, as the constant was
        # new: leader election (leader.py)
        "leader_election": True,
        "leader_lease_name": "",
        "leader_lease_namespace": "",
        "leader_identity": f"{socket.gethostname()}-{os.getpid()}",
        "leader_lease_seconds": 15,
        "leader_renew_deadline_seconds": 10.0,
        "leader_retry_seconds": 2.0,
    },
    worker_settings.WorkerSettings: {
        "redis_url": REDIS,
        "redis_sentinels": [],  # new: Redis through Sentinels (off)
        "redis_master": "longtask",
        "redis_sentinel_password": "",
        "pool": "default",
        "task_modules": [],  # was the string "", whose module_list() was []
        "files_root": "",
        "concurrency": 2,
        "pod_name": socket.gethostname(),
        "lease_seconds": 30.0,
        "visibility_timeout_seconds": celeryconfig.VISIBILITY_TIMEOUT_SECONDS,
        "restore_interval_seconds": celeryconfig.RESTORE_INTERVAL_SECONDS,
        "result_max_bytes": 16 * 1024,
        "cancel_grace_seconds": 30.0,
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "health_stale_seconds": 60.0,
        "metrics_dir": "",
    },
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(settings.PREFIX) or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)


@pytest.mark.parametrize("cls", CLASSES)
def test_defaults_are_what_they_were(cls: type[settings.Base]):
    assert cls().model_dump() == BEFORE[cls]


def test_fields_are_read_with_the_prefix_in_any_case(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LONGTASK_SSE_PING_SECONDS", "3")
    monkeypatch.setenv("longtask_poison_crashes", "7")
    monkeypatch.setenv("LONGTASK_AUTH", "false")
    monkeypatch.setenv("SSE_PING_SECONDS", "99")  # without the prefix: not ours
    monkeypatch.setenv("LONGTASK_NO_SUCH_SETTING", "x")  # unknown: ignored, not refused
    assert api_settings.ApiSettings().sse_ping_seconds == 3
    assert api_settings.ApiSettings().auth is False
    assert operator_settings.OperatorSettings().poison_crashes == 7


@pytest.mark.parametrize("cls", CLASSES)
def test_redis_url_comes_from_redis_url_only(monkeypatch: pytest.MonkeyPatch, cls: type[settings.Base]):
    monkeypatch.setenv("LONGTASK_REDIS_URL", "redis://prefixed:6379/0")
    assert cls().redis_url == REDIS
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6380/2")
    assert cls().redis_url == "redis://elsewhere:6380/2"


@pytest.mark.parametrize("cls", CLASSES)
def test_redis_sentinels_are_read_by_every_component(
    monkeypatch: pytest.MonkeyPatch, cls: type[settings.Base]
):
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@ignored:1/2")
    monkeypatch.setenv("LONGTASK_REDIS_SENTINELS", "s1:26379, [::1]:26380,")
    monkeypatch.setenv("LONGTASK_REDIS_MASTER", "main")
    monkeypatch.setenv("LONGTASK_REDIS_SENTINEL_PASSWORD", "spw")
    target = cls().redis_target()
    assert target.sentinels == (("s1", 26379), ("::1", 26380))
    assert (target.master, target.sentinel_password, target.tls) == ("main", "spw", True)
    assert target.node_kwargs()["password"] == "pw" and target.node_kwargs()["db"] == 2
    assert target.sentinel_kwargs()["password"] == "spw"


def test_a_sentinel_that_is_not_host_port_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LONGTASK_REDIS_SENTINELS", "s1:26379,s2")
    with pytest.raises(pydantic.ValidationError, match="not host:port"):
        worker_settings.WorkerSettings()


def test_comma_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LONGTASK_CORS_ORIGINS", " https://a.example, ,https://b.example:8443,")
    monkeypatch.setenv("LONGTASK_NAMESPACES", "team-*, !kube-system")
    monkeypatch.setenv("LONGTASK_TASK_MODULES", "longtask_worker.tasks.demo,acme.tasks")
    assert api_settings.ApiSettings().cors_origins == ["https://a.example", "https://b.example:8443"]
    assert operator_settings.OperatorSettings().namespace_list() == ["team-*", "!kube-system"]
    assert worker_settings.WorkerSettings().module_list() == ["longtask_worker.tasks.demo", "acme.tasks"]


def test_an_empty_or_blank_comma_list_is_empty(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LONGTASK_CORS_ORIGINS", "")
    monkeypatch.setenv("LONGTASK_NAMESPACES", " , ")
    assert api_settings.ApiSettings().cors_origins == []
    assert operator_settings.OperatorSettings().namespace_list() == []


def test_comma_lists_from_keyword_arguments():
    assert worker_settings.WorkerSettings(task_modules="a, b").module_list() == ["a", "b"]
    assert operator_settings.OperatorSettings(namespaces=["x"]).namespace_list() == ["x"]


def test_split_commas_leaves_non_strings_alone():
    assert settings.split_commas(" a,,b ") == ["a", "b"]
    assert settings.split_commas(["a, b"]) == ["a, b"]


def test_a_value_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LONGTASK_STATUS_WRITERS", "0")
    with pytest.raises(pydantic.ValidationError, match="status_writers"):
        operator_settings.OperatorSettings()
