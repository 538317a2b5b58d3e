"""Load test of ``optalloc serve`` on loopback: submits from concurrent clients, then cancels.

Starts the service as a real process on 127.0.0.1 (a fresh SQLite file, a bearer token), registers a
cluster, and sends ``--submits`` job submissions from ``--clients`` concurrent keep-alive connections
while the adaptive loop admits and re-solves in the background (``--min-interval`` seconds between
re-solves, ``--budget`` each); then cancels every job the same way. Reports throughput and latency
percentiles per phase, and the loop's solve times against the budget (from ``/metrics``).

Two ways to send: closed loop (the default: each of ``--clients`` connections sends its next request
when the previous one is answered, which measures throughput; its latencies hide the queueing a slow
server causes, as fewer requests are sent while it is slow) and open loop (``--rate R``: request i is
due at ``start + i / R`` whatever the server does, sent on the first free one of ``--clients``
connections, and its latency counts from that scheduled time, so that time spent waiting for a
connection or behind a slow answer is counted: no coordinated omission). The targets read: closed loop,
>= 500 submits/s; open loop at 500 submits/s, p99 <= 50 ms.

``--loop-in thread|process``: where the service runs its loop (its default: a worker process).

``--kill-at N``: ``kill -9`` the service once N submits were answered, restart it on the same file, and
check that every submit answered 2xx is there. ``--settle``: wait until every job is taken in and the
plan verifies (the 1,000 nodes x 10,000 jobs run uses it). Every request is bounded (count and time)
and goes to 127.0.0.1 only.

    python benchmarks/service_load.py --nodes 64 --submits 5000 --clients 32
    python benchmarks/service_load.py --nodes 1000 --submits 10000 --clients 32 --settle --budget 2
    python benchmarks/service_load.py --nodes 64 --submits 5000 --clients 32 --kill-at 2500
    python benchmarks/service_load.py --nodes 64 --submits 5000 --clients 64 --rate 500 --settle
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from optalloc.core import usable_cpus

TOKEN = "bench-token-0123456789abcdef"
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(self, db: Path, port: int, args: list[str]) -> None:
        self.db, self.port, self.args = db, port, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> Service:
        token = self.db.with_name("token")
        token.write_text(TOKEN + "\n")
        cmd = [sys.executable, "-m", "optalloc", "serve", "--db", str(self.db), "--port", str(self.port)]
        cmd += ["--token-file", str(token), *self.args]
        log = open(self.db.with_suffix(".log"), "ab")  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"service exited: {self.db.with_suffix('.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("service not ready within 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class Connection:
    """A minimal HTTP/1.1 keep-alive client (the load generator must cost the 2 cores little)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "content-length":
                length = int(value.strip())
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def job(i: int, rng: random.Random) -> dict[str, Any]:
    kind = rng.random()
    name = f"job-{i:06d}"
    if kind < 0.45:  # a share of one GPU
        return {
            "name": name,
            "cpu": rng.choice([1000, 2000, 4000]),
            "memory": 8192,
            "gpu_milli": rng.choice([250, 500]),
        }
    if kind < 0.85:
        return {"name": name, "cpu": 4000, "memory": 16384, "gpus": rng.choice([1, 1, 2, 4])}
    return {"name": name, "cpu": rng.choice([2000, 8000]), "memory": 4096}


async def run_phase(
    port: int, requests: list[tuple[str, str, bytes]], clients: int, stop_after: int | None = None
) -> dict[str, Any]:
    """Send ``requests`` from ``clients`` connections; latencies of the answered ones, 2xx names."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    ok: list[str] = []
    errors: dict[int, int] = {}
    done = asyncio.Event()

    async def worker() -> None:
        conn = Connection(port)
        try:
            while queue and not done.is_set():
                method, path, body = queue.pop()
                started = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(conn.request(method, path, body), timeout=30)
                except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
                    return  # the service went away (kill -9): this request was never answered
                latencies.append(time.perf_counter() - started)
                if 200 <= status < 300:
                    ok.append(json.loads(body)["name"] if method == "POST" else path)
                else:
                    errors[status] = errors.get(status, 0) + 1
                if stop_after is not None and len(latencies) >= stop_after:
                    done.set()
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    out = summary(latencies, time.perf_counter() - started)
    out.update(ok=ok, errors=errors)
    return out


async def run_open_phase(
    port: int, requests: list[tuple[str, str, bytes]], rate: float, clients: int, stop_after: int | None = None
) -> dict[str, Any]:
    """Send request i at ``start + i / rate`` on the first free of ``clients`` connections; each latency
    counts from the request's scheduled time (waiting for a free connection included)."""
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(clients):
        free.put_nowait(Connection(port))
    latencies: list[float] = []
    lags: list[float] = []
    ok: list[str] = []
    errors: dict[int, int] = {}
    lost = [0]
    done = asyncio.Event()

    async def send(method: str, path: str, body: bytes, due: float) -> None:
        conn = await free.get()
        if done.is_set():
            free.put_nowait(conn)
            return
        lags.append(time.perf_counter() - due)
        try:
            status, _ = await asyncio.wait_for(conn.request(method, path, body), timeout=30)
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
            lost[0] += 1
            conn.close()
            free.put_nowait(Connection(port))  # the service went away (kill -9), or timed out: a fresh one
            return
        latencies.append(time.perf_counter() - due)
        free.put_nowait(conn)
        if 200 <= status < 300:
            ok.append(json.loads(body)["name"] if method == "POST" else path)
        else:
            errors[status] = errors.get(status, 0) + 1
        if stop_after is not None and len(latencies) >= stop_after:
            done.set()

    tasks = []
    started = time.perf_counter()
    for i, (method, path, body) in enumerate(requests):
        if done.is_set():
            break
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(send(method, path, body, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    while not free.empty():
        free.get_nowait().close()
    out = summary(latencies, wall)
    lags.sort()
    out.update(
        ok=ok,
        errors=errors,
        lost=lost[0],
        offered=rate,
        send_lag_p99_ms=1000 * lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else float("nan"),
    )
    return out


def summary(latencies: list[float], wall: float) -> dict[str, Any]:
    """Count, throughput and percentiles (ms) of ``latencies`` (seconds) over ``wall`` seconds."""
    latencies.sort()

    def pct(p: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {
        "answered": len(latencies),
        "wall": wall,
        "throughput": len(latencies) / wall if wall else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
    }


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.split()[-1])
    return float("nan")


def loop_figures(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=30).text
    return {
        "steps": metric(text, "optalloc_steps_total"),
        "solves": metric(text, "optalloc_solve_seconds_count"),
        "solve_seconds_sum": metric(text, "optalloc_solve_seconds_sum"),
        "solve_seconds_max": metric(text, "optalloc_service_solve_seconds_max"),
        "over_budget": metric(text, "optalloc_service_solves_over_budget_total"),
        "fallbacks": metric(text, "optalloc_fallbacks_total"),
        "invalid_plans": metric(text, "optalloc_service_invalid_plans_total"),
        "internal_errors": metric(text, "optalloc_service_internal_errors_total"),
        "loop_errors": metric(text, "optalloc_service_loop_errors_total"),
        "worker_restarts": metric(text, "optalloc_service_loop_worker_restarts_total"),
    }


def settle(url: str, timeout: float) -> float:
    """Seconds until no job is pending (every accepted job taken in by the loop)."""
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as c:
        while time.monotonic() - started < timeout:
            if not c.get("/v1/jobs", params={"state": "pending", "limit": 1}).json()["total"]:
                return time.monotonic() - started
            time.sleep(0.5)
    raise SystemExit(f"jobs still pending after {timeout}s")


def verify_plan(url: str) -> int:
    """Violations of the published plan (optalloc.verify against the service's own nodes and jobs)."""
    from optalloc import Allocation, Problem, verify
    from optalloc.io import allocation_from_dict, job_from_dict, node_from_dict

    with httpx.Client(base_url=url, timeout=120) as c:
        nodes = [node_from_dict(n["node"]) for n in c.get("/v1/nodes").json()["nodes"] if not n["drained"]]
        jobs = []
        offset = 0
        while True:
            page = c.get("/v1/jobs", params={"limit": 10_000, "offset": offset}).json()
            jobs += [job_from_dict(j["job"]) for j in page["jobs"]]
            offset += len(page["jobs"])
            if offset >= page["total"] or not page["jobs"]:
                break
        allocation = allocation_from_dict(c.get("/v1/plan").json()["allocation"])
    placed = allocation.placed_jobs
    problem = Problem(tuple(nodes), tuple(j for j in jobs if j.name in placed))
    return len(verify(problem, Allocation(allocation.placements, status="feasible")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--submits", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--min-interval", type=float, default=2.0, help="seconds between two re-solves")
    parser.add_argument("--method", default="auto")
    parser.add_argument("--settle", action="store_true", help="wait until every job is taken in; verify the plan")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep the loop running after submits")
    parser.add_argument("--no-cancel", action="store_true")
    parser.add_argument("--kill-at", type=int, default=None, help="kill -9 after this many answered submits")
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop: requests per second, latency from scheduled times"
    )
    parser.add_argument("--loop-in", choices=("process", "thread"), default=None, help="where the service's loop runs")
    parser.add_argument("--loop-nice", type=int, default=None, help="nice value of the service's loop worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="append a markdown row here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="optalloc-load-"))
    db = tmp / "state.sqlite"
    port = free_port()
    service_args = ["--budget", str(args.budget), "--min-interval", str(args.min_interval), "--method", args.method]
    if args.loop_in is not None:
        service_args += ["--loop-in", args.loop_in]
    if args.loop_nice is not None:
        service_args += ["--loop-nice", str(args.loop_nice)]

    def phase(requests: list[tuple[str, str, bytes]], stop_after: int | None = None) -> dict[str, Any]:
        if args.rate is None:
            return asyncio.run(run_phase(port, requests, args.clients, stop_after=stop_after))
        return asyncio.run(run_open_phase(port, requests, args.rate, args.clients, stop_after=stop_after))

    mode = "closed loop" if args.rate is None else f"open loop at {args.rate:g}/s (latency from scheduled times)"
    service = Service(db, port, service_args).start()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "cores": usable_cpus()}
    try:
        with httpx.Client(base_url=service.url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            for i in range(args.nodes):
                gpus = 8 if i % 4 else 4
                node = {"name": f"node-{i:05d}", "cpu": 96000, "memory": 786432, "gpus": gpus, "gpu_model": "A100"}
                c.post("/v1/nodes", json=node).raise_for_status()
        jobs = [job(i, rng) for i in range(args.submits)]
        submits = [("POST", "/v1/jobs", json.dumps(j).encode()) for j in jobs]
        result = phase(submits, stop_after=args.kill_at)
        report["submit"] = {k: v for k, v in result.items() if k != "ok"}
        print(
            f"{mode}, {args.clients} connections"
            + (f", send lag p99 {result['send_lag_p99_ms']:.1f} ms" if args.rate else "")
        )
        print(
            f"submit: {result['answered']} answered in {result['wall']:.2f}s = {result['throughput']:.0f}/s, "
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms, "
            f"errors {result['errors']}"
        )
        if args.kill_at is not None:
            service.kill()
            accepted = set(result["ok"])
            service = Service(db, port, service_args).start()
            with httpx.Client(base_url=service.url, timeout=60) as c:
                known = set()
                offset = 0
                while True:
                    page = c.get("/v1/jobs", params={"limit": 10_000, "offset": offset}).json()
                    known |= {j["name"] for j in page["jobs"]}
                    offset += len(page["jobs"])
                    if offset >= page["total"] or not page["jobs"]:
                        break
            lost = accepted - known
            report["kill"] = {"accepted": len(accepted), "after_restart": len(known), "lost": len(lost)}
            print(f"kill -9 after {len(accepted)} accepted submits: {len(known)} jobs after restart, {len(lost)} lost")
        if args.settle:
            took = settle(service.url, timeout=600)
            report["settle_seconds"] = took
            print(f"every job taken in {took:.1f}s after the last submit")
        if args.hold:
            time.sleep(args.hold)
        if args.settle:
            report["violations"] = verify_plan(service.url)
            print(f"plan verified: {report['violations']} violations")
        if not args.no_cancel and args.kill_at is None:
            cancels = [("DELETE", f"/v1/jobs/{j['name']}", b"") for j in jobs]
            result = phase(cancels)
            report["cancel"] = {k: v for k, v in result.items() if k != "ok"}
            print(
                f"cancel: {result['answered']} in {result['wall']:.2f}s = {result['throughput']:.0f}/s, "
                f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, errors {result['errors']}"
            )
        report["loop"] = loop_figures(service.url)
        loop = report["loop"]
        print(
            f"loop: {loop['steps']:.0f} steps, {loop['solves']:.0f} solves (max {loop['solve_seconds_max']:.2f}s, "
            f"budget {args.budget}s, over budget {loop['over_budget']:.0f}), fallbacks {loop['fallbacks']:.0f}, "
            f"invalid plans {loop['invalid_plans']:.0f}, internal errors {loop['internal_errors']:.0f}, "
            f"worker restarts {loop['worker_restarts']:.0f}"
        )
    finally:
        service.stop()
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    if args.out is not None:
        s = report["submit"]
        c_ = report.get("cancel", {})
        loop = report["loop"]
        sending = "closed" if args.rate is None else f"open {args.rate:g}/s"
        row = (
            f"| {sending} | {args.loop_in or 'process'} | {args.nodes} | {args.submits} | {args.clients} | "
            f"{s['throughput']:.0f} | {s['p50_ms']:.1f} | "
            f"{s['p99_ms']:.1f} | {c_.get('throughput', float('nan')):.0f} | {c_.get('p99_ms', float('nan')):.1f} | "
            f"{loop['solves']:.0f} | {loop['solve_seconds_max']:.2f} / {args.budget:g} | {loop['over_budget']:.0f} |"
        )
        with open(args.out, "a") as f:
            f.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
