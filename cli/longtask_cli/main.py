"""`longtask`: argument parsing and dispatch to the component or dev command; no logic here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from longtask_cli import commands

EPILOG = """\
quick start:
  longtask dev up                  run the whole platform locally (embedded Kubernetes)
  set -a; source .longtask/env; set +a    KUBECONFIG, REDIS_URL, LONGTASK_API for the shell
  longtask submit demo.sleep -p seconds=10 -p steps=20 --watch
  kubectl apply -f examples/sleep.yaml && kubectl get lt -w
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longtask",
        description="A Kubernetes-native platform for long-running jobs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    op = sub.add_parser("operator", help="run the operator (Kopf) against $KUBECONFIG / in-cluster")
    op.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    op.set_defaults(func=commands.operator)

    worker = sub.add_parser("worker", help="run a Celery worker of one pool")
    worker.add_argument(
        "--pool",
        default=None,
        help="worker pool; consumes queue longtask.<pool> (env LONGTASK_POOL, default: default)",
    )
    worker.add_argument(
        "--tasks",
        default=None,
        metavar="MODULES",
        help="comma-separated modules registering tasks with @sdk.task "
        "(env LONGTASK_TASK_MODULES); the worker serves only these, built-ins included: "
        "longtask_worker.tasks.demo, longtask_worker.tasks.docs, longtask_worker.tasks.agent",
    )
    worker.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=None,
        help="parallel tasks (env LONGTASK_CONCURRENCY, default 2)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port from the main process (env LONGTASK_METRICS_PORT, "
        "default 0: off)",
    )
    worker.add_argument(
        "--name",
        default=None,
        help="worker node name (default: <pool>@<pod>, LONGTASK_POD_NAME or the host name)",
    )
    worker.set_defaults(func=commands.worker)

    api = sub.add_parser("api", help="run the HTTP gateway (FastAPI on uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.set_defaults(func=commands.api)

    api_help = "gateway URL (env LONGTASK_API, default http://127.0.0.1:8080)"
    token_help = "Kubernetes bearer token for the gateway (env LONGTASK_TOKEN; `dev up --auth` writes one)"
    submit = sub.add_parser(
        "submit",
        help="create a task through the gateway (and --watch it)",
        description="Create a LongTask through the gateway and print its name.",
    )
    submit.add_argument("task", help="registered task name, e.g. demo.sleep")
    submit.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task parameter; VALUE is read as JSON when it parses (10, true, [1,2]), "
        "else as a string (repeatable)",
    )
    submit.add_argument("--name", default=None, help="the LongTask's name (default: generated)")
    submit.add_argument("--namespace", "-n", default="default")
    submit.add_argument("--pool", default=None, help="worker pool (default: default)")
    submit.add_argument("--watch", "-w", action="store_true", help="follow its progress until it ends")
    submit.add_argument("--api", default=None, help=api_help)
    submit.add_argument("--token", default=None, help=token_help)
    submit.set_defaults(func=commands.submit)

    watch = sub.add_parser(
        "watch",
        help="follow a task's progress live (SSE) until it ends",
        description="Print one line per event; exit 0 if it Succeeded, 1 otherwise. "
        "Reconnects with Last-Event-ID if the connection drops.",
    )
    watch.add_argument("name")
    watch.add_argument("--namespace", "-n", default="default")
    watch.add_argument("--api", default=None, help=api_help)
    watch.add_argument("--token", default=None, help=token_help)
    watch.set_defaults(func=commands.watch)

    cancel = sub.add_parser("cancel", help="cancel a task (sets spec.cancel through the gateway)")
    cancel.add_argument("name")
    cancel.add_argument("--namespace", "-n", default="default")
    cancel.add_argument("--api", default=None, help=api_help)
    cancel.add_argument("--token", default=None, help=token_help)
    cancel.set_defaults(func=commands.cancel)

    dlq = sub.add_parser("dlq", help="the dead-letter queue: list and replay parked tasks")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="DLQ_COMMAND")
    dlq_list = dlq_sub.add_parser("list", help="list dead-lettered tasks, oldest first")
    dlq_list.add_argument("--namespace", "-n", default=None, help="only this namespace")
    dlq_list.add_argument("--api", default=None, help=api_help)
    dlq_list.add_argument("--token", default=None, help=token_help)
    dlq_list.set_defaults(func=commands.dlq_list)
    dlq_replay = dlq_sub.add_parser("replay", help="replay one task (NAME) or --all")
    target = dlq_replay.add_mutually_exclusive_group(required=True)
    target.add_argument("name", nargs="?", help="the LongTask to replay")
    target.add_argument("--all", action="store_true", help="replay every dead-lettered task")
    dlq_replay.add_argument(
        "--namespace",
        "-n",
        default=None,
        help="the task's namespace (default: default); with --all, only this one",
    )
    dlq_replay.add_argument("--api", default=None, help=api_help)
    dlq_replay.add_argument("--token", default=None, help=token_help)
    dlq_replay.set_defaults(func=commands.dlq_replay)

    dev = sub.add_parser("dev", help="local development: embedded control plane and platform")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    for name, helptext, func in (
        (
            "cluster",
            "start etcd, kube-apiserver, controller manager, scheduler and Redis",
            commands.dev_cluster,
        ),
        ("up", "start the cluster plus CRDs, operator, a worker and the gateway", commands.dev_up),
    ):
        p = dev_sub.add_parser(
            name,
            help=helptext,
            description=helptext + "; writes DIR/kubeconfig and DIR/env, runs until Ctrl-C.",
        )
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(".longtask"),
            help="where kubeconfig, env, logs and data go (default: .longtask)",
        )
        if name == "up":
            p.add_argument("--api-port", type=int, default=8080, help="gateway port (default 8080)")
            p.add_argument(
                "--auth",
                action="store_true",
                help="run the gateway with Kubernetes auth on, and write a token of ServiceAccount "
                "longtask-dev to DIR/env as LONGTASK_TOKEN (default: auth off)",
            )
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
