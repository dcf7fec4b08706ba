"""The README's first command: `longtask dev cluster` and `longtask dev up`.

Covers: `dev cluster --state-dir DIR` prints `ready in N.N s`, writes DIR/kubeconfig and a
sourceable DIR/env (KUBECONFIG, REDIS_URL); `dev up` also writes LONGTASK_API and one
LONGTASK_METRICS_<COMPONENT> line per component, says its gateway runs with auth off, a
task submitted to that API streams to Succeeded, every metrics URL answers; `dev up
--auth` says auth is on and writes LONGTASK_TOKEN, which the CLI uses (without it the
gateway answers 401); `dev up --redis-ha` says so, writes LONGTASK_REDIS_SENTINELS (three
Sentinels that name a master) and LONGTASK_REDIS_MASTER, gives the pool's pods them through
the Secret longtask-redis, and runs a task; Ctrl-C (SIGINT) stops everything with exit 0
and leaves no listening port (the Sentinels' included).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from longtask_dev import binaries, procs
from tests import helpers

pytestmark = pytest.mark.cluster


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "longtask_cli", "dev", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _ready(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if re.fullmatch(r"ready in \d+\.\d s", line.strip()):
            return lines
    raise AssertionError("exited before ready:\n" + "\n".join(lines[-30:]))


def _env(state: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (state / "env").read_text().splitlines())


def _listening(url: str) -> bool:
    return helpers.port_listening(int(url.split("//")[1].split("/")[0].split(":")[1]))


def _interrupt(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()


def test_dev_cluster(tmp_path):
    proc = _start("cluster", "--state-dir", str(tmp_path))
    try:
        _ready(proc)
        env = _env(tmp_path)
        assert set(env) == {"KUBECONFIG", "REDIS_URL"} and Path(env["KUBECONFIG"]).is_file()
        server = re.search(r"server: (\S+)", Path(env["KUBECONFIG"]).read_text())
        assert server is not None and _listening(server.group(1))
    finally:
        code = _interrupt(proc)
    assert code == 0 and not _listening(server.group(1))


def test_dev_up_runs_a_task_and_stops_cleanly(tmp_path):
    proc = _start("up", "--state-dir", str(tmp_path), "--api-port", str(procs.free_port()))
    try:
        lines = _ready(proc)
        assert any("kubectl apply -f examples/sleep.yaml" in line for line in lines)
        assert "gateway auth: off (use --auth)" in lines
        env = _env(tmp_path)
        assert {
            "KUBECONFIG",
            "REDIS_URL",
            "LONGTASK_API",
            "LONGTASK_METRICS_OPERATOR",
            "LONGTASK_METRICS_API",
            "LONGTASK_METRICS_WORKER",
        } <= set(env)
        metrics = [value for key, value in env.items() if key.startswith("LONGTASK_METRICS_")]
        for url in metrics:
            assert httpx.get(url).status_code == 200, url
        with httpx.Client(base_url=env["LONGTASK_API"]) as client:
            created = client.post(
                "/v1/namespaces/default/tasks",
                json={"spec": {"task": "demo.sleep", "params": {"seconds": 0.5, "steps": 2}}},
            )
            assert created.status_code == 202, created.text
            kinds = [e.event for e in helpers.sse_events(client, created.json()["links"]["events"])]
        assert kinds[-1] == "succeeded"
    finally:
        code = _interrupt(proc)
    assert code == 0
    assert not any(_listening(url) for url in [env["LONGTASK_API"], *metrics])


def test_dev_up_with_auth_hands_the_cli_a_token(tmp_path):
    proc = _start("up", "--state-dir", str(tmp_path), "--api-port", str(procs.free_port()), "--auth")
    try:
        lines = _ready(proc)
        assert any(line.startswith("gateway auth: on") for line in lines)
        env = _env(tmp_path)
        assert env["LONGTASK_TOKEN"]
        denied = httpx.get(f"{env['LONGTASK_API']}/v1/namespaces/default/tasks")
        assert denied.status_code == 401
        out = subprocess.run(
            [sys.executable, "-m", "longtask_cli", "submit", "demo.noop", "--watch"],
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "Succeeded" in out.stdout.splitlines()[-1]
        out = subprocess.run(
            [sys.executable, "-m", "longtask_cli", "dlq", "list", "--token", "not-a-token"],
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert out.returncode == 1 and "error 401" in out.stderr
    finally:
        code = _interrupt(proc)
    assert code == 0


def test_dev_up_with_redis_ha_points_everything_at_the_sentinels(tmp_path):
    proc = _start("up", "--state-dir", str(tmp_path), "--api-port", str(procs.free_port()), "--redis-ha")
    try:
        lines = _ready(proc)
        assert any(line.startswith("redis: a primary, a replica and 3 Sentinels") for line in lines)
        env = _env(tmp_path)
        sentinels = env["LONGTASK_REDIS_SENTINELS"].split(",")
        assert len(sentinels) == 3 and env["LONGTASK_REDIS_MASTER"] == "longtask"
        for address in sentinels:
            with redis.Redis(port=int(address.split(":")[1]), decode_responses=True) as sentinel:
                assert sentinel.sentinel_get_master_addr_by_name("longtask")
        secret = subprocess.run(
            [
                str(binaries.path("kubectl")),
                f"--kubeconfig={env['KUBECONFIG']}",
                "get",
                "secret",
                "longtask-redis",
                "-n",
                "default",
                "-o",
                "jsonpath={.data}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert {"url", "sentinels", "master"} <= set(json.loads(secret)), secret
        out = subprocess.run(
            [sys.executable, "-m", "longtask_cli", "submit", "demo.noop", "--watch"],
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "Succeeded" in out.stdout.splitlines()[-1]
    finally:
        code = _interrupt(proc)
    assert code == 0
    assert not any(helpers.port_listening(int(address.split(":")[1])) for address in sentinels)
