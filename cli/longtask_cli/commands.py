"""What the component and dev commands of `longtask` do: start a component, or the local platform.

The gateway commands (submit, watch, get, list, logs, cancel, dlq) are in taskcmds.py."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"


def operator(args: argparse.Namespace) -> int:
    import kopf  # imported here: the other commands do not need Kopf

    if args.namespace:  # Kopf follows WorkerPools there, taskwatch.py LongTasks
        os.environ["LONGTASK_NAMESPACES"] = ",".join(args.namespace)
    from longtask_contracts import logs
    from longtask_operator import (
        handlers,  # noqa: F401 - registers the handlers
        settings,
    )

    cfg = settings.get_settings()
    kopf.configure(verbose=False)
    logs.configure(text_format=None)  # LONGTASK_LOG_FORMAT=json: JSON lines instead of Kopf's text
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,
        liveness_endpoint=f"http://{cfg.health_host}:{cfg.health_port}/healthz" if cfg.health_port else None,
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    for flag, env in (
        ("pool", "LONGTASK_POOL"),
        ("tasks", "LONGTASK_TASK_MODULES"),
        ("concurrency", "LONGTASK_CONCURRENCY"),
        ("metrics_port", "LONGTASK_METRICS_PORT"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = str(value)
    from longtask_contracts import logs, names
    from longtask_worker import exposition, liveness, settings, signatures, store

    json_logs = logs.configure(text_format=WORKER_LOG_FORMAT)
    cfg = settings.get_settings()
    exposition.prepare(cfg)  # before prometheus_client is imported (by app, via runner)
    from longtask_worker import app

    celery = app.create_app(cfg)
    liveness.install(celery, stale_seconds=cfg.health_stale_seconds)  # what /healthz reads
    exposition.serve(cfg)
    signatures.publish(store.connect(cfg.redis_target()), pool=cfg.pool)  # for the gateway's submit form
    node = args.name or f"{cfg.pool}@{cfg.pod_name}"
    celery.worker_main(
        [
            *(["--quiet"] if json_logs else []),  # no banner amid the JSON lines
            "worker",
            "--queues",  # in this order: a batch's lanes wait behind the pool's tasks (names.items_queue)
            f"{names.queue(cfg.pool)},{names.items_queue(cfg.pool)}",
            "--hostname",
            node,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def api(args: argparse.Namespace) -> int:
    from longtask_api import serve, settings

    cfg = settings.get_settings()
    processes = args.processes or cfg.gateway_processes
    serve.run(host=args.host, port=args.port, processes=processes, profile_file=cfg.profile_file)
    return 0


def _wait_for_signal() -> None:
    stop = {"sig": 0}

    def handler(signum: int, _: FrameType | None) -> None:
        stop["sig"] = signum

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["sig"]:
        signal.pause()


def dev_cluster(args: argparse.Namespace) -> int:
    from longtask_dev import cluster

    began = time.monotonic()
    c = cluster.Cluster(state_dir=args.state_dir.resolve())
    c.start()
    try:
        print(f"kubeconfig: {c.kubeconfig}\nenv:        {c.env_file}  (source it)")
        print(f"ready in {time.monotonic() - began:.1f} s", flush=True)
        _wait_for_signal()
    finally:
        c.stop()
    return 0


def dev_up(args: argparse.Namespace) -> int:
    from longtask_dev import cluster, platform

    began = time.monotonic()
    c = cluster.Cluster(state_dir=args.state_dir.resolve(), redis_ha=args.redis_ha)
    c.start()
    try:
        if c.redis_ha is not None:
            print(f"redis: a primary, a replica and 3 Sentinels ({c.redis_ha.sentinels})", flush=True)
        if args.auth:
            print(
                f"gateway auth: on (LONGTASK_TOKEN in {c.env_file}: ServiceAccount {platform.DEV_ACCOUNT})",
                flush=True,
            )
        else:
            print("gateway auth: off (use --auth)", flush=True)
        p = platform.Platform(c, api_port=args.api_port, auth=args.auth).start(workers=0)
        # The default pool's workers run as a WorkerPool-scaled Deployment on the local node
        # (min 1, so a first task starts at once; up to 4 pods under load), open to the
        # LongTasks of every namespace (namespaceSelector {}).
        pool = platform.worker_pool_manifests(
            pool="default",
            min_replicas=1,
            max_replicas=4,
            concurrency=2,
            namespace_selector={},
            extra_env={**_telemetry_env(), **p.worker_metrics_env()},
        )
        p.apply_worker_pool(pool)
        c.append_env(LONGTASK_METRICS_WORKER=p.worker_metrics_urls[0])
        p.wait_metrics(p.worker_metrics_urls[0])
        p.wait_workers_ready(pool[0]["metadata"]["name"])
        print(_next_steps(c.env_file, p.api_url, auth=args.auth))
        print(f"ready in {time.monotonic() - began:.1f} s", flush=True)
        _wait_for_signal()
    except Exception as exc:
        print(f"longtask dev up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        c.stop()
    return 0


def _telemetry_env() -> dict[str, str]:
    """OTEL_* and LONGTASK_LOG_FORMAT of this shell, for the pods (processes inherit them)."""
    return {k: v for k, v in os.environ.items() if k.startswith("OTEL_") or k == "LONGTASK_LOG_FORMAT"}


def _next_steps(env_file: object, api_url: str, *, auth: bool) -> str:
    bearer = ' -H "Authorization: Bearer $LONGTASK_TOKEN"' if auth else ""
    token = ", LONGTASK_TOKEN" if auth else ""
    return f"""\
longtask is up. In another shell:

  set -a; source {env_file}; set +a          # KUBECONFIG, REDIS_URL, LONGTASK_API{token}, LONGTASK_METRICS_*
  uv run longtask submit demo.sleep -p seconds=10 -p steps=20 --watch

or with kubectl (the one in ~/.cache/longtask/bin/kubernetes-v1.37.2/):

  kubectl apply -f examples/sleep.yaml      # a 20-second task with progress
  kubectl get lt -w                         # watch Phase and Progress
  kubectl wait lt/sleep-demo --for=jsonpath='{{.status.phase}}'=Succeeded

or through the gateway ({api_url}/docs):

  curl -s -XPOST {api_url}/v1/namespaces/default/tasks{bearer} \\
       -H 'content-type: application/json' \\
       -d '{{"spec": {{"task": "demo.sleep", "params": {{"seconds": 10, "steps": 20}}}}}}'
  curl -N{bearer} {api_url}/v1/namespaces/default/tasks/<name>/events

Workers scale with the queue (WorkerPool `default`, 1 to 4 pods on the local node,
open to every namespace):

  kubectl get wp,deploy,pods                # POOL QUEUED RUNNING DESIRED REPLICAS
  kubectl apply -f examples/workerpool.yaml # pool `batch`: 0 to 5 pods, 4 tasks each,
                                            # for LongTasks of its own namespace only

Ctrl-C stops everything."""
