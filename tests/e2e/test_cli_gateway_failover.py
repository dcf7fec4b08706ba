"""`longtask watch` across gateway restarts and crashes, through one address (tests/lbproxy.py
in front of two gateway processes, answering 503 while no gateway is up, as an Ingress does).

Covers: the real CLI process following a running task while the gateway carrying its stream
is stopped (SIGTERM, a rolling update) and started again, then while both gateways are
SIGKILLed and stay down for several of its tries (it gets 503s meanwhile) before one comes
back: it exits 0 (Succeeded) and prints each event exactly once, the same lines as a fresh
read of the whole stream afterwards; it says on stderr that it resumed, and after which event.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest

from longtask_cli import display
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import gateways as gateways_mod
from tests import helpers, lbproxy, lt

pytestmark = pytest.mark.cluster


@pytest.fixture
def gateways(platform: platform_mod.Platform) -> Iterator[gateways_mod.Gateways]:
    gws = gateways_mod.Gateways(platform).start_all()
    yield gws
    gws.stop()


def _progress(redis_client, uid: str) -> int:
    return sum(e.kind.value == "progress" for e in lt.stream(redis_client, uid))


def test_watch_survives_restarts_and_a_crash_of_every_gateway(
    platform, kubectl, namespace, redis_client, gateways
):
    uid = lt.create(kubectl, namespace, "watched", task="demo.sleep", params={"seconds": 40, "steps": 80})
    with lbproxy.Balancer(gateways.backends, unavailable_answer=True) as proxy:
        argv = platform_mod.longtask_argv("watch", "watched", "-n", namespace, "--api", proxy.url)
        cli = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(cli.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            procs.wait_until(lambda: len(lines) >= 4, timeout=60, what="the CLI's first lines")
            # A rolling update: the gateway carrying the stream stops, and comes back.
            (carrier,) = [port for _, port in proxy.open_connections()]
            gateways.stop_one(carrier)
            gateways.start(carrier)
            # Every gateway crashes; none answers for a while (the proxy says 503).
            before = _progress(redis_client, uid)
            refused = proxy.refused
            for port in list(gateways.children):
                gateways.kill(port)
            procs.wait_until(lambda: proxy.refused >= refused + 3, timeout=60, what="three 503s to the CLI")
            assert _progress(redis_client, uid) < 80, "the task ended before the gateways came back"
            gateways.start(gateways.ports[0])
            cli.wait(timeout=120)
        except procs.ProcessError as exc:
            cli.kill()
            raise AssertionError(f"{exc}; the CLI said:\n{lines}\n{cli.stderr.read()}") from None  # type: ignore[union-attr]
        finally:
            if cli.poll() is None:
                cli.kill()
        with httpx.Client(base_url=proxy.url) as client:
            everything = list(helpers.sse_events(client, f"/v1/namespaces/{namespace}/tasks/watched/events"))

    reader.join(timeout=10)
    err = cli.stderr.read()  # type: ignore[union-attr]
    assert cli.returncode == 0, err
    assert [line.rstrip("\n") for line in lines] == [display.event_line(e) for e in everything]
    assert len(everything) == len(lt.stream(redis_client, uid)) and everything[-1].event == "succeeded"
    assert _progress(redis_client, uid) > before
    assert "answer 503" in err and "resuming after event" in err, err
