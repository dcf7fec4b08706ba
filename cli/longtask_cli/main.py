"""`longtask`: argument parsing and dispatch to the component or dev command; no logic here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from longtask_cli import commands, itemcmds, schedulecmds, taskcmds
from longtask_contracts import envvars

EPILOG = """\
quick start:
  longtask dev up                  run the whole platform locally (embedded Kubernetes)
  set -a; source .longtask/env; set +a    KUBECONFIG, REDIS_URL, LONGTASK_API for the shell
  longtask submit demo.sleep -p seconds=10 -p steps=20 --watch
  kubectl apply -f examples/sleep.yaml && kubectl get lt -w
"""
EXIT_CODES = f"""\
exit codes of submit --watch and watch:
  {taskcmds.EXIT_SUCCEEDED}  the task Succeeded
  {taskcmds.EXIT_FAILED}  the task Failed, or the gateway refused the request (its reason on stderr)
  2  wrong arguments
  {taskcmds.EXIT_CANCELLED}  the task was Cancelled
  {taskcmds.EXIT_STREAM_LOST}  no event got through for 60 s of retries: the end is unknown

On a terminal, progress is a live bar; piped, one line per event.
"""
API_HELP = "gateway URL (env LONGTASK_API, default http://127.0.0.1:8080)"
TOKEN_HELP = "Kubernetes bearer token for the gateway (env LONGTASK_TOKEN; `dev up --auth` writes one)"
NS_HELP = "the namespace (env LONGTASK_NAMESPACE, default: default)"
# What the gateway commands (submit, watch, get, list, items, logs, cancel, dlq, schedule) read
# when no flag is given.
ENVIRONMENT = (
    envvars.Variable(
        name="LONGTASK_API",
        default="http://127.0.0.1:8080",
        description="The gateway's URL, when --api is not given (`longtask dev up` writes it to "
        ".longtask/env).",
        readers=(envvars.CLI,),
    ),
    envvars.Variable(
        name="LONGTASK_TOKEN",
        default="",
        description="The Kubernetes bearer token sent to the gateway, when --token is not given; unset: "
        "none (`longtask dev up --auth` writes one to .longtask/env).",
        readers=(envvars.CLI,),
    ),
    envvars.Variable(
        name="LONGTASK_NAMESPACE",
        default="default",
        description="The namespace of the gateway commands, when -n is not given.",
        readers=(envvars.CLI,),
    ),
)


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, func: object, **kwargs: object
) -> argparse.ArgumentParser:
    """A gateway command with -n/--namespace, --api and --token."""
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)  # type: ignore[arg-type]
    p.add_argument("--namespace", "-n", default=os.environ.get("LONGTASK_NAMESPACE", "default"), help=NS_HELP)
    p.add_argument("--api", default=None, help=API_HELP)
    p.add_argument("--token", default=None, help=TOKEN_HELP)
    p.set_defaults(func=func)
    return p


def _gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    submit = _add(
        sub,
        "submit",
        taskcmds.submit,
        help="create a task through the gateway (and --watch it)",
        description="Create a LongTask through the gateway and print its name. A lost connection, "
        "a timeout or a 502/503/504 answer is retried (4 times, 0.5 to 4 s apart) with the same "
        "Idempotency-Key, so one submit makes at most one task (docs/idempotency.md).",
        epilog=EXIT_CODES,
        formatter_class=raw,
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
    submit.add_argument("--pool", default=None, help="worker pool (default: default)")
    submit.add_argument(
        "--items",
        default=None,
        metavar="FILE",
        help="make it a batch: FILE ('-': stdin) holds its items, a JSON array of objects or one "
        "object per line (JSON Lines); up to 100,000 (docs/batch-api.md)",
    )
    submit.add_argument("--watch", "-w", action="store_true", help="follow its progress until it ends")

    watch = _add(
        sub,
        "watch",
        taskcmds.watch,
        help="follow a task's progress live (SSE) until it ends",
        description="Show the task's progress until it ends; reconnects with Last-Event-ID "
        "if the connection drops.",
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    watch.add_argument("name")

    get = _add(sub, "get", taskcmds.get, help="show one task: phase, progress, attempts, result or error")
    get.add_argument("name")
    get.add_argument("--output", "-o", choices=["table", "json"], default="table")

    lst = _add(sub, "list", taskcmds.list_tasks, help="list the namespace's tasks (oldest first)")
    lst.add_argument("--phase", default=None, help="only tasks in this phase (e.g. Running, Failed)")
    lst.add_argument("--task", default=None, help="only tasks running this task name")
    lst.add_argument("--output", "-o", choices=["table", "json"], default="table")

    logs = _add(sub, "logs", taskcmds.logs, help="print a task's event log (--follow: then live)")
    logs.add_argument("name")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing events until it ends")

    items = _add(
        sub,
        "items",
        itemcmds.items,
        help="list a batch's items by index: phase, attempts, when each finished, its error or result",
    )
    items.add_argument("name")
    items.add_argument(
        "--phase",
        default=None,
        choices=["Queued", "Running", "Retrying", "Succeeded", "Failed", "Cancelled"],
        help="only items in this phase (e.g. Failed)",
    )
    items.add_argument("--limit", type=int, default=None, help="at most this many items (default: all)")
    items.add_argument("--output", "-o", choices=["table", "json"], default="table")

    cancel = _add(sub, "cancel", taskcmds.cancel, help="cancel a task (sets spec.cancel through the gateway)")
    cancel.add_argument("name")

    _schedule_commands(sub)

    dlq = sub.add_parser("dlq", help="the dead-letter queue: list and replay parked tasks")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="DLQ_COMMAND")
    dlq_list = dlq_sub.add_parser("list", help="list dead-lettered tasks, oldest first")
    dlq_list.add_argument("--namespace", "-n", default=None, help="only this namespace")
    dlq_list.add_argument("--api", default=None, help=API_HELP)
    dlq_list.add_argument("--token", default=None, help=TOKEN_HELP)
    dlq_list.set_defaults(func=taskcmds.dlq_list)
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
    dlq_replay.add_argument("--api", default=None, help=API_HELP)
    dlq_replay.add_argument("--token", default=None, help=TOKEN_HELP)
    dlq_replay.set_defaults(func=taskcmds.dlq_replay)


def _schedule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser(
        "schedule",
        help="LongTaskSchedules: list them, run one now, suspend or resume one",
        description="LongTaskSchedules through the gateway (create them with kubectl apply). "
        "NEXT RUN is status.nextScheduleTime as the operator "
        "wrote it, '-' until it has (or while suspended).",
    )
    verbs = schedule.add_subparsers(dest="schedule_command", required=True, metavar="SCHEDULE_COMMAND")
    lst = _add(
        verbs,
        "list",
        schedulecmds.list_schedules,
        help="the namespace's schedules: schedule, time zone, suspend, next run, last run and its phase",
    )
    lst.add_argument("--output", "-o", choices=["table", "json"], default="table")
    trigger = _add(
        verbs,
        "trigger",
        schedulecmds.trigger,
        help="run the schedule NAME now: a LongTask from its template, named NAME-manual-<unix seconds>",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trigger.add_argument("name")
    trigger.add_argument("--watch", "-w", action="store_true", help="follow the run until it ends")
    for verb, func, helptext in (
        ("suspend", schedulecmds.suspend, "stop new runs of NAME (spec.suspend: true); runs going on go on"),
        ("resume", schedulecmds.resume, "let NAME run on schedule again (spec.suspend: false)"),
    ):
        _add(verbs, verb, func, help=helptext).add_argument("name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longtask",
        description="A Kubernetes-native platform for long-running jobs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    op = sub.add_parser(
        "operator",
        help="run the operator (Kopf) against $KUBECONFIG / in-cluster",
        description="Run the operator. With leader election (LONGTASK_LEADER_ELECTION, on by default) "
        "any number of operators of one scope may run: the one holding the Lease "
        "(`kubectl get lease -A`: longtask-operator, or longtask-operator-HASH when scoped with -n) "
        "runs the loops, the others wait as standbys and take over within the lease (15 s) after "
        "it dies, within a retry period (2 s) when it stops cleanly (it releases the Lease). "
        "A second one started by hand "
        "(LONGTASK_METRICS_PORT=0 LONGTASK_HEALTH_PORT=0) joins as a standby. "
        "Settings: docs/settings.md; docs/high-availability.md.",
    )
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

    api = sub.add_parser("api", aliases=["gateway"], help="run the HTTP gateway (FastAPI on uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument(
        "--processes",
        type=int,
        default=None,
        help="gateway processes on this one port, each with its own stream reader; a dead one is "
        "replaced (env LONGTASK_GATEWAY_PROCESSES, default 1)",
    )
    api.set_defaults(func=commands.api)

    _gateway_commands(sub)
    dev = sub.add_parser("dev", help="local development: embedded control plane and platform")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    for name, helptext, func in (
        (
            "cluster",
            "start etcd, kube-apiserver, controller manager, scheduler and Redis",
            commands.dev_cluster,
        ),
        (
            "up",
            "start the cluster plus CRDs, operator, an autoscaled worker pool and the gateway",
            commands.dev_up,
        ),
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
            p.add_argument(
                "--redis-ha",
                action="store_true",
                help="run Redis as a primary, one replica and three Sentinels (failover in a few "
                "seconds) and point every component at the Sentinels: writes LONGTASK_REDIS_SENTINELS "
                "and LONGTASK_REDIS_MASTER to DIR/env (default: one Redis)",
            )
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
