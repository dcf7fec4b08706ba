"""The gateway scaling out: submits and SSE watchers through 1 and N gateway processes.

It starts the embedded kube-apiserver + etcd and Redis, applies the CRDs, and starts two
gateways (auth off, create rate and stream limits off): one process (`--processes 1`) and
`--processes N`, each on its own port. Every client runs in processes of its own (this file
run as `client-submit` / `client-sse`), never on the event loop of anything it measures.

1. Submit: 64 creates at once over 64 keep-alive HTTP/1.1 connections (httpx.AsyncClient,
   the same client and settings on every arm), `--rounds` times after one warm-up round, to
   (a) the apiserver directly (POST .../longtasks, what kubectl does; TLS and a bearer
   token, as the gateway itself talks to it), (b) the 1-process gateway, (c) the N-process
   gateway (POST /v1/namespaces/{ns}/tasks). The arms take turns round by round, so drift
   on the shared machine hits them alike. Reported: p50/p99/max per arm and the p99 ratio
   gateway/direct (target <= 1.3x).
2. SSE: the operator and real workers (demo.sleep tasks, two progress events per second each)
   run `--tasks` tasks; once all run, `--watchers` SSE clients (raw asyncio sockets, in
   `--client-processes` processes, split evenly) connect at once to the N-process gateway,
   spread evenly over the tasks. Connect time: from the start until each client has its
   first event (the stream's replay from its start), max over clients. Delivery latency:
   a client's receipt time minus the event's `at` (the worker's time.time() when it
   published it), for events published after every client of that process was connected,
   over `--seconds`. Targets: 5,000 watchers on 20 tasks connected within 5 s, p99 <= 100 ms;
   2,000 on 10 tasks p99 <= 100 ms. Each client process reports its CPU share (CPU seconds
   / wall seconds): well below 1.0 means the client was not the bottleneck.

Run (about 4 minutes):

    uv run python bench/gateway_scale.py [--processes 2] [--rounds 10] [--sse 5000x20,2000x10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAMESPACE = "default"
SUBMIT_CONCURRENCY = 64
SUBMIT_TARGET = 1.3
SSE_CONNECT_TARGET = 5.0
SSE_P99_TARGET_MS = 100.0


def progress(what: str) -> None:
    print(f"[bench] {what} ...", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# -- clients (run as their own processes) ------------------------------------------------------


async def submit_client(args: argparse.Namespace) -> dict[str, Any]:
    """One round of 64 creates at once per arm, `rounds` times after a warm-up; latencies per arm."""
    import httpx

    arms: list[dict[str, Any]] = json.loads(args.arms)
    limits = httpx.Limits(max_connections=SUBMIT_CONCURRENCY, max_keepalive_connections=SUBMIT_CONCURRENCY)
    clients = {
        arm["name"]: httpx.AsyncClient(
            base_url=arm["url"],
            limits=limits,
            timeout=60,
            verify=arm.get("ca") or False,
            headers={"Authorization": f"Bearer {arm['token']}"} if arm.get("token") else {},
        )
        for arm in arms
    }
    latencies: dict[str, list[float]] = {arm["name"]: [] for arm in arms}
    errors: dict[str, list[str]] = {arm["name"]: [] for arm in arms}

    async def one(arm: dict[str, Any], i: int, record: bool) -> None:
        client = clients[arm["name"]]
        if arm["kind"] == "direct":
            path = f"/apis/longtask.io/v1alpha1/namespaces/{args.namespace}/longtasks"
            body: dict[str, Any] = {
                "apiVersion": "longtask.io/v1alpha1",
                "kind": "LongTask",
                "metadata": {"generateName": "direct-"},
                "spec": {"task": "demo.noop"},
            }
            ok = 201
        else:
            path, body, ok = f"/v1/namespaces/{args.namespace}/tasks", {"spec": {"task": "demo.noop"}}, 202
        began = time.perf_counter()
        try:
            response = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            errors[arm["name"]].append(repr(exc))
            return
        took = time.perf_counter() - began
        if response.status_code != ok:
            errors[arm["name"]].append(f"{response.status_code}: {response.text[:200]}")
        elif record:
            latencies[arm["name"]].append(took)

    for round_ in range(args.rounds + 1):
        for arm in arms:
            await asyncio.gather(*(one(arm, i, round_ > 0) for i in range(SUBMIT_CONCURRENCY)))
            await asyncio.sleep(0.2)
    for client in clients.values():
        await client.aclose()
    return {"latencies": latencies, "errors": errors}


class SseRun:
    """The watchers of one client process: when each had its first event, what it measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.first: list[float] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.connected = asyncio.Event()
        self.measure_from = math.inf  # events published from then on count
        self.stop = asyncio.Event()

    def arrived(self) -> None:
        self.first.append(time.time() - self.args.start_at)
        if len(self.first) == self.args.watchers:
            self.measure_from = time.time()
            self.connected.set()

    async def watch(self, name: str) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.args.port, limit=1 << 20)
        except OSError as exc:
            self.errors.append(f"connect: {exc}")
            return
        writer.write(
            f"GET /v1/namespaces/{self.args.namespace}/tasks/{name}/events HTTP/1.1\r\nHost: x\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        try:
            status = await reader.readline()
            if b" 200 " not in status:
                body = await reader.read(600)
                self.errors.append(f"status: {status!r} {body[-300:]!r}")
                return
            await self._read(name, reader)
        except (OSError, ValueError) as exc:
            self.errors.append(f"stream: {exc!r}")
        finally:
            writer.close()

    async def _read(self, name: str, reader: asyncio.StreamReader) -> None:
        seen = False
        while not self.stop.is_set():
            line = await reader.readline()
            if not line:
                self.errors.append(f"{name}: the stream ended")
                return
            if not line.startswith(b"data: "):
                continue
            now = time.time()
            if not seen:
                seen = True
                self.arrived()
                continue
            at = json.loads(line[6:])["at"]
            if at >= self.measure_from:
                self.latencies.append(now - at)


async def sse_client(args: argparse.Namespace) -> dict[str, Any]:
    """`watchers` SSE connections spread over `names`; connect times and delivery latencies."""
    names = args.names.split(",")
    delay = args.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    run = SseRun(args)
    tasks = [asyncio.create_task(run.watch(names[i % len(names)])) for i in range(args.watchers)]
    try:
        await asyncio.wait_for(run.connected.wait(), args.connect_timeout)
    except TimeoutError:
        run.errors.append(f"only {len(run.first)} of {args.watchers} had their first event in time")
        run.measure_from = time.time()
    await asyncio.sleep(args.seconds)
    run.stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "first": run.first,
        "latencies": run.latencies,
        "errors": run.errors,
        "cpu_share": (cpu_seconds() - cpu0) / (time.monotonic() - wall0),
    }


def client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["client-submit", "client-sse"])
    parser.add_argument("--arms", default="[]")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--names", default="")
    parser.add_argument("--watchers", type=int, default=0)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    run = submit_client if args.role == "client-submit" else sse_client
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    return 0


def spawn_client(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)


def collect(child: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = child.communicate()
    if child.returncode:
        raise SystemExit(f"a client process failed ({child.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


# -- the bench ------------------------------------------------------------------------------


def ms_line(name: str, values: list[float], errors: int) -> str:
    ms = [v * 1000 for v in values]
    if not ms:
        return f"{name:<28} {'no samples':>26}   errors {errors}"
    return (
        f"{name:<28} {statistics.median(ms):8.1f} {percentile(ms, 0.99):8.1f} {max(ms):8.1f} "
        f"{len(ms):8d} {errors:7d}"
    )


def submit_arms(c: Any, ports: dict[int, int], rounds: int) -> list[str]:
    arms: list[dict[str, Any]] = [
        {
            "name": "direct (apiserver)",
            "kind": "direct",
            "url": c.api_url,
            "ca": c._pki("ca.crt"),
            "token": c.token,
        }
    ]
    for processes, port in ports.items():
        arms.append({"name": f"gateway x{processes}", "kind": "gateway", "url": f"http://127.0.0.1:{port}"})
    progress(f"submit: {rounds} rounds of {SUBMIT_CONCURRENCY} creates at once, per arm")
    result = collect(spawn_client("client-submit", "--arms", json.dumps(arms), "--rounds", str(rounds)))
    out = [
        "",
        f"Submit: {SUBMIT_CONCURRENCY} creates at once over {SUBMIT_CONCURRENCY} keep-alive connections, "
        f"{rounds} rounds per arm (one client process, httpx)",
        f"{'arm':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'samples':>8} {'errors':>7}",
    ]
    lat, errs = result["latencies"], result["errors"]
    for arm in arms:
        out.append(ms_line(arm["name"], lat[arm["name"]], len(errs[arm["name"]])))
    direct = lat["direct (apiserver)"]
    for arm in arms[1:]:
        if direct and lat[arm["name"]]:
            ratio = percentile(lat[arm["name"]], 0.99) / percentile(direct, 0.99)
            verdict = "met" if ratio <= SUBMIT_TARGET else "missed"
            out.append(
                f"{arm['name']}: p99 ratio to direct {ratio:.2f}x (target <= {SUBMIT_TARGET}x: {verdict})"
            )
    for name, errors in errs.items():
        out += [f"error ({name}): {e}" for e in errors[:3]]
    return out


def running_tasks(p: Any, count: int, seconds: float) -> list[str]:
    """`count` demo.sleep tasks created through kubectl, once every one of them runs."""
    stamp = int(time.time())
    docs = [
        {
            "apiVersion": "longtask.io/v1alpha1",
            "kind": "LongTask",
            "metadata": {"name": f"sse-{stamp}-{i}"},
            "spec": {"task": "demo.sleep", "params": {"seconds": seconds, "steps": int(seconds * 2)}},
        }
        for i in range(count)
    ]
    c = p.cluster
    c.kubectl("apply", "-n", NAMESPACE, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    names = [d["metadata"]["name"] for d in docs]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = json.loads(c.kubectl("get", "lt", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        phases = {o["metadata"]["name"]: (o.get("status") or {}).get("phase") for o in items}
        if all(phases.get(n) == "Running" for n in names):
            return names
        time.sleep(0.5)
    raise SystemExit(f"the {count} tasks did not all run within 120 s: {phases}")


def sse_arm(
    p: Any, port: int, processes: int, watchers: int, count: int, args: argparse.Namespace
) -> list[str]:
    progress(f"SSE: {count} running tasks, then {watchers} watchers on the x{processes} gateway")
    names = running_tasks(p, count, seconds=args.seconds + 60)
    start_at = time.time() + 1.0
    share = watchers // args.client_processes
    children = [
        spawn_client(
            "client-sse",
            "--port",
            str(port),
            "--names",
            ",".join(names),
            "--watchers",
            str(share + (1 if i < watchers % args.client_processes else 0)),
            "--start-at",
            str(start_at),
            "--seconds",
            str(args.seconds),
        )
        for i in range(args.client_processes)
    ]
    results = [collect(child) for child in children]
    first = [t for r in results for t in r["first"]]
    latencies = [t for r in results for t in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    connect = max(first) if len(first) == watchers else math.inf
    p99 = percentile(latencies, 0.99) * 1000 if latencies else math.inf
    c_verdict = "met" if connect <= SSE_CONNECT_TARGET else "missed"
    p_verdict = "met" if p99 <= SSE_P99_TARGET_MS else "missed"
    out = [
        "",
        f"SSE: {watchers} watchers of {count} running tasks ({watchers // count} each), "
        f"gateway x{processes}, {args.client_processes} client processes, {args.seconds:g} s measured",
        f"connect: all {len(first)}/{watchers} had their first event after {connect:.2f} s "
        f"(p50 {statistics.median(first) if first else math.nan:.2f} s); target <= {SSE_CONNECT_TARGET:g} s: "
        f"{c_verdict}",
        f"{'delivery':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'events':>8} {'errors':>7}",
        ms_line("gateway", latencies, len(errors)),
        f"delivery p99 target <= {SSE_P99_TARGET_MS:g} ms: {p_verdict}",
        "client CPU share per process: " + ", ".join(f"{r['cpu_share']:.2f}" for r in results),
    ]
    out += [f"error: {e}" for e in errors[:5]]
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="gateway processes of the scaled arm")
    parser.add_argument("--rounds", type=int, default=10, help="submit rounds of 64 per arm (0: no submit)")
    parser.add_argument(
        "--sse", default="5000x20,2000x10", help="SSE arms as WATCHERSxTASKS, comma-separated ('': none)"
    )
    parser.add_argument(
        "--sse-processes", type=int, default=0, help="gateway processes for SSE (default --processes)"
    )
    parser.add_argument("--client-processes", type=int, default=2, help="SSE client processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="SSE delivery measured this long")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (concurrency 10 each)")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep kubeconfig and logs here")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the 1-process gateway into this file"
    )
    args = parser.parse_args(argv)
    from longtask_dev import cluster as cluster_mod
    from longtask_dev import platform as platform_mod
    from longtask_dev import procs

    env = {
        "LONGTASK_STREAMS_PER_CALLER": "0",  # auth off: every watcher is one caller (one IP)
        "LONGTASK_CREATE_RATE_PER_SECOND": "0",
    }
    lines: list[str] = [f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start"]
    progress("starting the cluster")
    with cluster_mod.Cluster(state_dir=args.state_dir and args.state_dir.resolve()) as c:
        p = platform_mod.Platform(c)
        p.apply_crds()
        ports: dict[int, int] = {}
        for n in sorted({1, args.processes}):
            ports[n] = procs.free_port()
            profile = (
                {"LONGTASK_PROFILE_FILE": str(args.profile.resolve())} if args.profile and n == 1 else {}
            )
            p.start_api(port=ports[n], extra_env={**env, "LONGTASK_GATEWAY_PROCESSES": str(n), **profile})
        if args.rounds:
            lines += submit_arms(c, ports, args.rounds)
        if args.sse:
            sse_n = args.sse_processes or args.processes
            if sse_n not in ports:
                ports[sse_n] = procs.free_port()
                p.start_api(port=ports[sse_n], extra_env={**env, "LONGTASK_GATEWAY_PROCESSES": str(sse_n)})
            p.start_operator()
            for _ in range(args.workers):
                p.start_worker(concurrency=10)
            for spec in args.sse.split(","):
                watchers, count = (int(x) for x in spec.split("x"))
                lines += sse_arm(p, ports[sse_n], sse_n, watchers, count, args)
        progress("stopping")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("client-"):
        sys.exit(client_main(sys.argv[1:]))
    sys.exit(main(sys.argv[1:]))
