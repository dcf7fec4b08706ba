"""The gateway commands (`submit`, `watch`, `get`, `list`, `logs`, `cancel`, `dlq`): HTTP calls
and their printing. It starts no component (commands.py does) and parses no SSE (sseclient.py)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import uuid
from typing import Any

import httpx

from longtask_cli import display, sseclient

# Exit codes of `submit --watch` and `watch` (main.py's help and the README list them).
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1  # the task Failed, or the gateway refused the request (its reason on stderr)
EXIT_CANCELLED = 3
EXIT_STREAM_LOST = 4  # no event got through within sseclient.follow's patience: the end is unknown
_EXIT_OF_PHASE = {"Succeeded": EXIT_SUCCEEDED, "Cancelled": EXIT_CANCELLED}
# `submit` sends its create again after a lost connection, a timeout or one of these answers
# (a proxy's, or the gateway's 503 when Kubernetes or Redis is unreachable), with the same
# Idempotency-Key, so the retry answers the task the first try made, if it made one.
RETRY_STATUSES = frozenset({502, 503, 504})
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds before each retry: four retries, 7.5 s in all


def gateway(args: argparse.Namespace) -> httpx.Client:
    token = args.token or os.environ.get("LONGTASK_TOKEN")
    return httpx.Client(
        base_url=args.api or os.environ.get("LONGTASK_API", "http://127.0.0.1:8080"),
        headers={"Authorization": f"Bearer {token}"} if token else None,
        timeout=30,
    )


def answer(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON body of a 2xx answer; otherwise print the gateway's reason and return None."""
    try:
        body: dict[str, Any] = response.json()
    except ValueError:  # not the gateway's Problem (a proxy's error page)
        body = {"detail": response.text.strip()[:200] or response.reason_phrase}
    if response.is_success:
        return body
    reasons = "; ".join(f"{e['field']}: {e['message']}" for e in body.get("errors", []))
    print(
        f"error {response.status_code}: {body.get('detail')}{' (' + reasons + ')' if reasons else ''}",
        file=sys.stderr,
    )
    return None


def ask(args: argparse.Namespace, method: str, path: str, **request: Any) -> dict[str, Any] | None:
    """One request to the gateway: the JSON body of a 2xx answer, else None (reason printed)."""
    with gateway(args) as client:
        return answer(client.request(method, path, **request))


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--param wants KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _tasks(args: argparse.Namespace, rest: str = "") -> str:
    return f"/v1/namespaces/{args.namespace}/tasks{rest}"


def submit(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {"task": args.task, "params": dict(_param(p) for p in args.param)}
    if args.pool:
        spec["pool"] = args.pool
    body: dict[str, Any] = {"spec": spec, **({"name": args.name} if args.name else {})}
    if args.items:
        body["items"] = _read_items(args.items)
    with gateway(args) as client:
        response = _create(client, _tasks(args), body)
    created = None if response is None else answer(response)
    if created is None:
        return EXIT_FAILED
    print(f"created {args.namespace}/{created['name']}", flush=True)
    if not args.watch:
        return EXIT_SUCCEEDED
    args.name = created["name"]
    return watch(args)


def _read_items(path: str) -> Any:
    """A batch's items from a file ('-': stdin): a JSON array, or JSON Lines. The gateway
    checks them (objects, sizes, how many); only the JSON is read here."""
    try:
        text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"--items {path}: {exc.strerror or exc}") from None
    try:
        if text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise SystemExit(f"--items {path}: not a JSON array nor JSON Lines ({exc})") from None


def _create(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response | None:
    """POST the create, retried with one fresh Idempotency-Key (so at most one task is made);
    the last answer, or None when no try got one (the reason printed)."""
    headers = {"Idempotency-Key": f'"{uuid.uuid4()}"'}  # a Structured Field string, as the draft says
    for delay in RETRY_DELAYS:
        response, why = _post(client, path, body, headers)
        if not why:
            return response
        print(f"retrying the create in {delay:g} s ({why})", file=sys.stderr, flush=True)
        time.sleep(delay)
    response, why = _post(client, path, body, headers)
    if response is None:
        print(f"error: the gateway did not answer: {why}", file=sys.stderr)
    return response


def _post(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[httpx.Response | None, str]:
    """One try: (its answer, None if none came; why another try may do better, "" if it cannot)."""
    try:
        response = client.post(path, json=body, headers=headers)
    except httpx.TransportError as exc:  # refused, reset, dropped, timed out
        return None, repr(exc)
    # 409 with Retry-After: a request with this key is still being processed.
    busy = response.status_code == 409 and "retry-after" in response.headers
    return (
        response,
        f"answer {response.status_code}" if busy or response.status_code in RETRY_STATUSES else "",
    )


def watch(args: argparse.Namespace) -> int:
    """Show each event (a bar on a terminal); resume after a drop; exit by the final phase."""
    phase = None
    with gateway(args) as client, display.Watch(f"{args.namespace}/{args.name}") as shown:

        def dropped(exc: Exception, last_id: str | None) -> None:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            why = repr(exc) if status is None else f"answer {status}"
            shown.note(f"stream interrupted ({why}); resuming after event {last_id}")

        try:
            last = None
            for event in sseclient.follow(client, _tasks(args, f"/{args.name}/events"), on_drop=dropped):
                phase, last = event.data.get("phase"), event
                shown.show(event)
        except httpx.HTTPStatusError as exc:
            answer(exc.response)
            return EXIT_FAILED
        except sseclient.StreamLost as exc:
            shown.note(str(exc))
            return EXIT_STREAM_LOST
    if shown.live and last is not None:
        print(display.event_line(last), flush=True)  # the outcome, as a line under the bar
    return _EXIT_OF_PHASE.get(str(phase), EXIT_FAILED)


def _row(t: dict[str, Any]) -> str:
    s = t.get("status") or {}
    message = s.get("message") or (s.get("error") or {}).get("message") or ""
    progress = f"{s.get('progress') or 0:.0f}%"
    return (
        f"{t['name']:<32} {t['spec'].get('task', ''):<20} {s.get('phase') or 'Pending':<10} "
        f"{progress:>8} {s.get('attempts') or 0:>8}  {message}"
    ).rstrip()


_HEADER = f"{'NAME':<32} {'TASK':<20} {'PHASE':<10} {'PROGRESS':>8} {'ATTEMPTS':>8}  MESSAGE"


def get(args: argparse.Namespace) -> int:
    task = ask(args, "GET", _tasks(args, f"/{args.name}"))
    if task is None:
        return EXIT_FAILED
    if args.output == "json":
        print(json.dumps(task, indent=2))
        return EXIT_SUCCEEDED
    print(_HEADER)
    print(_row(task))
    s = task.get("status") or {}
    if s.get("result") is not None:
        print(f"result: {json.dumps(s['result'])}")
    if s.get("error"):
        print(f"error: {s['error'].get('type')}: {s['error'].get('message')}")
    return EXIT_SUCCEEDED


def list_tasks(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": 500}
    if args.phase:
        params["phase"] = args.phase
    if args.task:
        params["task"] = args.task
    items: list[dict[str, Any]] = []
    with gateway(args) as client:
        while True:
            page = answer(client.get(_tasks(args), params=params))
            if page is None:
                return EXIT_FAILED
            items += page["items"]
            if not page.get("continue"):
                break
            params["continue"] = page["continue"]
    if args.output == "json":
        print(json.dumps(items, indent=2))
        return EXIT_SUCCEEDED
    print(_HEADER)
    for task in sorted(items, key=lambda t: t.get("createdAt") or ""):
        print(_row(task))
    return EXIT_SUCCEEDED


def logs(args: argparse.Namespace) -> int:
    """The task's event log so far; with --follow, then live until it ends."""
    with gateway(args) as client:
        log = answer(client.get(_tasks(args, f"/{args.name}/log")))
        if log is None:
            return EXIT_FAILED
        last = None
        for item in log["items"]:
            last = sseclient.Event(item["id"], item["event"], item["data"])
            print(display.event_line(last), flush=True)
        terminal = last is not None and last.event in ("succeeded", "failed", "cancelled")
        if not args.follow or terminal:
            return EXIT_SUCCEEDED
        url = _tasks(args, f"/{args.name}/events")
        try:  # resumed after a drop, as `watch` is
            for event in sseclient.follow(client, url, last_event_id=last.id if last else None):
                print(display.event_line(event), flush=True)
        except httpx.HTTPStatusError as exc:
            answer(exc.response)
            return EXIT_FAILED
        except sseclient.StreamLost as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_STREAM_LOST
    return EXIT_SUCCEEDED


def cancel(args: argparse.Namespace) -> int:
    body = ask(args, "POST", _tasks(args, f"/{args.name}/cancel"))
    if body is None:
        return EXIT_FAILED
    print(f"cancellation requested for {args.namespace}/{args.name} (phase {body['status']['phase']})")
    return EXIT_SUCCEEDED


def _print_dead_letters(items: list[dict[str, Any]]) -> None:
    print(f"{'NAMESPACE':<16} {'NAME':<32} {'TASK':<24} {'ATTEMPTS':>8}  REASON / LAST ERROR")
    for e in items:
        error = e.get("error") or {}
        print(
            f"{e['namespace']:<16} {e['name']:<32} {e['task']:<24} {e['attempts']:>8}  "
            f"{e['reason']}: {error.get('type', '')}: {error.get('message', '')}"
        )


def dlq_list(args: argparse.Namespace) -> int:
    params = {"namespace": args.namespace} if args.namespace else {}
    items: list[dict[str, Any]] = []
    with gateway(args) as client:
        while True:  # every page, following `continue`
            body = answer(client.get("/v1/deadletters", params=params))
            if body is None:
                return EXIT_FAILED
            items.extend(body["items"])
            if not body.get("continue"):
                break
            params["continue"] = body["continue"]
    _print_dead_letters(sorted(items, key=lambda e: float(e.get("at") or 0)))
    return EXIT_SUCCEEDED


def dlq_replay(args: argparse.Namespace) -> int:
    with gateway(args) as client:
        if args.all:
            params = {"namespace": args.namespace} if args.namespace else {}
            body = answer(client.post("/v1/deadletters/replay", params=params))
        else:
            body = answer(client.post(f"/v1/deadletters/{args.namespace or 'default'}/{args.name}/replay"))
    if body is None:
        return EXIT_FAILED
    print(f"replaying {len(body['items'])} task(s)")
    _print_dead_letters(body["items"])
    return EXIT_SUCCEEDED
