"""Helpers shared by the service tests: a service in-process (TestClient) or as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from optalloc import Allocation, Problem, verify
from optalloc.adaptive import ControllerConfig
from optalloc.io import allocation_from_dict, job_from_dict, node_from_dict

TOKEN = "test-token-0123456789abcdef"


def fast_controller(**changes: Any) -> ControllerConfig:
    """A loop that answers quickly in tests: auto within 0.5 s on one worker."""
    values: dict[str, Any] = {"method": "auto", "budget": 0.5, "workers": 1}
    values.update(changes)
    return ControllerConfig.of(**values)


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(every)


def cluster_problem(client: Any) -> tuple[Problem, Allocation]:
    """The service's cluster as a problem (active nodes, every job) and its current plan's allocation."""
    nodes = [node_from_dict(n["node"]) for n in client.get("/v1/nodes").json()["nodes"] if not n["drained"]]
    jobs = [job_from_dict(j["job"]) for j in client.get("/v1/jobs", params={"limit": 10_000}).json()["jobs"]]
    plan = client.get("/v1/plan").json()
    return Problem(tuple(nodes), tuple(jobs)), allocation_from_dict(plan["allocation"])


def assert_valid_plan(client: Any) -> dict[str, Any]:
    """The published plan passes optalloc.verify against the cluster it was made for."""
    problem, allocation = cluster_problem(client)
    placed = allocation.placed_jobs
    running = Problem(problem.nodes, tuple(j for j in problem.jobs if j.name in placed))
    violations = verify(running, Allocation(allocation.placements, status="feasible"))
    assert violations == [], violations
    return client.get("/v1/plan").json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``optalloc serve`` as a real process on a loopback port."""

    def __init__(self, db: Path, *, port: int | None = None, args: tuple[str, ...] = (), log: Path | None = None):
        self.db = db
        self.port = port or free_port()
        self.args = args
        self.log = log or db.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        cmd = [sys.executable, "-m", "optalloc", "serve", "--db", str(self.db), "--port", str(self.port), *self.args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTALLOC_TOKEN")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server not ready within {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush, nothing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running(db: Path, **kwargs: Any) -> Iterator[Server]:
    server = Server(db, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()
