"""Runs the gateway on uvicorn: one process, or N processes on one port (`longtask api
--processes N`, LONGTASK_GATEWAY_PROCESSES), and says which metrics registry /metrics reads.

N processes are uvicorn's own supervisor (its `workers`): the parent binds the port once and
hands the listening socket to N spawned children, each a whole gateway with its own shared
stream reader (fanout.Hub), Redis pool, Kubernetes client and first-send Celery producer.
The kernel gives each new connection to whichever child accepts first, so an idle child
takes the next one. The parent answers SIGTERM/SIGINT by sending SIGTERM to every child and
waiting for each (a child ends its streams after `SHUTDOWN_SECONDS`); it replaces a child
that dies, or that stops answering its health pipe for `HEALTHCHECK_SECONDS` (it is then SIGKILLed).

Metrics: with N > 1 the children write prometheus-client's multiprocess files
(runtime promfiles.py) and every child's /metrics reads all of them, so one scrape sees the
whole pod (counters summed, `longtask_api_sse_streams` the sum over live children).

It must not build the application (app.py does) nor hold settings at import.
"""

from __future__ import annotations

import functools
import shutil
from typing import Any

from fastapi import FastAPI

from longtask_contracts import logs
from longtask_runtime import promfiles

SHUTDOWN_SECONDS = 5
# Connections waiting to be accepted (uvicorn's default 2048; the kernel caps it at
# net.core.somaxconn): a crowd of watchers connecting at once is queued, not sent to retry.
BACKLOG = 8192
# Seconds a child may leave the supervisor's health ping unanswered before it is SIGKILLed and
# replaced (uvicorn's default 5 killed children that were only busy: thousands of streams
# opening at once on a loaded machine).
HEALTHCHECK_SECONDS = 30
TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"


def configure_logging() -> dict[str, Any]:
    """The gateway's own messages (e.g. whether auth is on) next to uvicorn's; the uvicorn
    options that go with it (in JSON, uvicorn's lines go to the root's JSON handler)."""
    if not logs.configure(text_format=TEXT_FORMAT):
        return {}
    from longtask_api import accesslog

    accesslog.install()  # a request's line names its task
    return {"log_config": None}


def child_app() -> FastAPI:
    """The factory each child of `--processes N` runs: spawned children start with a fresh
    interpreter, so they set up logging themselves before building the app."""
    from longtask_api import app

    configure_logging()
    return app.create_app()


def run(*, host: str, port: int, processes: int, profile_file: str = "") -> None:
    """Serve until SIGTERM/SIGINT: `processes` 1 in this process, else that many children.
    With `profile_file` and one process, write a cProfile of the whole run there at the end."""
    import uvicorn

    options: dict[str, Any] = dict(
        configure_logging(),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        backlog=BACKLOG,
        factory=True,
    )
    if processes <= 1:
        if not profile_file:
            uvicorn.run("longtask_api.app:create_app", **options)
            return
        import cProfile
        import signal
        import sys

        # uvicorn raises the SIGTERM it caught again once it stopped: end by SystemExit, so the
        # stats get written, instead of by the signal's default action.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        profile = cProfile.Profile()
        try:
            profile.runcall(uvicorn.run, "longtask_api.app:create_app", **options)
        finally:
            profile.dump_stats(profile_file)
        return
    path = promfiles.prepare(component="gateway")  # before any child starts
    try:
        uvicorn.run(
            "longtask_api.serve:child_app",
            workers=processes,
            timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
            **options,
        )
    finally:
        shutil.rmtree(path, ignore_errors=True)


@functools.cache
def registry() -> Any:
    """What /metrics exposes: this process' metrics, or with N processes all of theirs."""
    import prometheus_client

    path = promfiles.current()
    if path is None:
        return prometheus_client.REGISTRY
    gathered = prometheus_client.CollectorRegistry()
    gathered.register(promfiles.Collector(path))
    return gathered
