"""Serves the worker's /metrics from Celery's main process, counting every prefork child.

prometheus-client's multiprocess mode, done the way its documentation asks:
- each worker process tree gets its own PROMETHEUS_MULTIPROC_DIR, emptied when the worker
  starts (a restarted worker must not add its predecessor's counts twice), set before
  prometheus_client is imported (prepare());
- a child that exits normally marks itself dead (Celery's worker_process_shutdown), and
  before every scrape the files of any dead process are swept too (a child ended by
  os._exit or SIGKILL never runs its shutdown signal), so `live*` gauges count live
  processes only; counters and histograms of dead children keep counting, as they should;
- the HTTP server runs in the main process only: a child closes the listening socket it
  inherited at fork.
The same server answers GET /healthz, the worker's liveness probe, from liveness.py (whether
the consumer's event loop in the main process still ticks).

It must not define metrics (metrics.py) nor touch Celery's configuration.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import sys
import threading
import wsgiref.simple_server
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from longtask_contracts import envvars
from longtask_runtime import promfiles
from longtask_worker import liveness, settings

log = logging.getLogger(__name__)
ENV = promfiles.ENV
ENVIRONMENT = (
    envvars.Variable(
        name=ENV,
        default="",
        description="prometheus-client's multiprocess directory: the worker sets it itself from "
        "LONGTASK_METRICS_DIR when its metrics are on, for its prefork children; not to be set by hand.",
        readers=(envvars.WORKER,),
    ),
)
_server: Any = None


def metrics_dir(cfg: settings.WorkerSettings) -> Path | None:
    """This process tree's directory: LONGTASK_METRICS_DIR, or None for one per main pid."""
    return Path(cfg.metrics_dir) if cfg.metrics_dir else None


def prepare(cfg: settings.WorkerSettings) -> Path | None:
    """Create and empty this worker's multiprocess directory and point prometheus_client at
    it; None (and nothing done) when metrics are off. Call before importing metrics.py."""
    if not cfg.metrics_port:
        return None
    path = promfiles.prepare(component="worker", path=metrics_dir(cfg))
    if "prometheus_client" in sys.modules:  # imported early by someone: switch its values over
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def serve(cfg: settings.WorkerSettings) -> bool:
    """Serve /metrics and /healthz on LONGTASK_METRICS_PORT from this (the main) process; False
    if off or the port is taken (on a shared host another worker pod has it: this one serves
    none, and never fails over its metrics)."""
    global _server
    path = os.environ.get(ENV)
    if not cfg.metrics_port or not path:
        return False
    from celery import signals
    from prometheus_client import CollectorRegistry, make_wsgi_app

    from longtask_worker import metrics

    registry = CollectorRegistry()
    registry.register(promfiles.Collector(Path(path)))
    try:
        _server = wsgiref.simple_server.make_server(
            cfg.metrics_host, cfg.metrics_port, _routes(make_wsgi_app(registry)), _Server, _QuietHandler
        )
    except OSError as exc:
        log.warning("not serving metrics: port %s: %s", cfg.metrics_port, exc)
        return False
    threading.Thread(target=_server.serve_forever, name="metrics", daemon=True).start()
    metrics.SLOTS.set(cfg.concurrency)
    signals.worker_process_init.connect(_child_started, weak=False)
    signals.worker_process_shutdown.connect(_child_exiting, weak=False)
    log.info("metrics on http://%s:%s/metrics (%s)", cfg.metrics_host, cfg.metrics_port, path)
    return True


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    """One thread per request (a slow scrape never holds up a probe); dies with the process."""

    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    """No access log line per scrape or probe."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _routes(metrics_app: Any) -> Any:
    """GET /healthz answers from liveness.reading() (200 live, 503 wedged); anything else is
    prometheus_client's app (which answers every path with the metrics)."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        health = liveness.reading()
        body = json.dumps(
            {"live": health.live, "paused": health.paused, "loopAgeSeconds": round(health.age_seconds, 3)}
        ).encode()
        status = "200 OK" if health.live else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _child_started(**_: Any) -> None:
    """In a new prefork child: drop the copy of the main process' listening socket."""
    if _server is not None:
        _server.socket.close()


def _child_exiting(**_: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid(), os.environ[ENV])  # type: ignore[no-untyped-call]
