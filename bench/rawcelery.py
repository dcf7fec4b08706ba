"""The raw-Celery arm of bench/dispatch.py: a no-op Celery task with longtask's settings.

The app gets longtask's exact Celery configuration (longtask_runtime.celeryconfig) but
consumes its own queue and runs a task that only records, in one RPUSH at its end, when
it started and finished. Run as a worker (bench/dispatch.py starts it):

    python bench/rawcelery.py REDIS_URL CONCURRENCY
"""

from __future__ import annotations

import sys
import time

import redis
from celery import Celery

from longtask_runtime import celeryconfig

QUEUE = "bench.raw"
TASK = "bench.raw.noop"


def results_key(run: str) -> str:
    """The Redis list that the tasks of one run append `seq started finished` to."""
    return f"bench:raw:{run}"


def create_app(redis_url: str, concurrency: int = 2) -> Celery:
    app = Celery("bench-raw")
    celeryconfig.configure(app, redis_url=redis_url, concurrency=concurrency)
    app.conf.task_default_queue = QUEUE
    clients: dict[str, redis.Redis] = {}

    @app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)
    def noop(run: str, seq: int) -> None:
        started = time.time()
        client = clients.setdefault("redis", redis.Redis.from_url(redis_url))
        client.rpush(results_key(run), f"{seq} {started!r} {time.time()!r}")

    return app


def main(redis_url: str, concurrency: str) -> None:
    argv = ["worker", "--queues", QUEUE, "--hostname", "bench-raw@%h", "--loglevel", "INFO"]
    argv += ["--concurrency", concurrency, "--without-gossip", "--without-mingle"]
    create_app(redis_url, int(concurrency)).worker_main(argv)


if __name__ == "__main__":
    main(*sys.argv[1:3])
