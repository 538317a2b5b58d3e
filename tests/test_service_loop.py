"""Where the service's loop runs: a worker process of its own (the default) that is replaced when it dies
and never outlives the service, or the loop's thread (``loop_in="thread"``)."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from service_support import Server, assert_valid_plan, fast_controller, wait_for

from optalloc.service import Settings, create_app, wire
from optalloc.service.engine import Snapshot
from optalloc.service.runtime import Cluster
from optalloc.service.worker import InProcess

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NODE = {"name": "a100-0", "cpu": "32", "memory": "256Gi", "gpus": 4, "gpu_model": "A100"}


def make_client(tmp_path: Path, **settings: Any) -> TestClient:
    values: dict[str, Any] = {
        "db": tmp_path / "state.sqlite",
        "controller": fast_controller(),
        "tick": 0.05,
        "batch_window": 0.01,
    }
    values.update(settings)
    return TestClient(create_app(Settings(**values)))


def cluster_of(c: TestClient) -> Cluster:
    cluster: Cluster = c.app.state.cluster  # type: ignore[attr-defined]
    return cluster


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc).

    A thread may exit between listing the tasks and reading its ``children``
    file (the service's threads come and go): such a thread has no children.
    """
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            listed = (task / "children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out |= {int(p) for p in listed.split()}
    return out


def gone(pid: int) -> bool:
    """``pid`` has exited and been reaped (a zombie still counts as there)."""
    return not Path(f"/proc/{pid}").exists()


def running(c: TestClient, name: str) -> bool:
    return bool(c.get(f"/v1/jobs/{name}").json()["state"] == "running")


def metric(c: TestClient, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_loop_steps_in_a_worker_process_of_its_own(tmp_path: Path) -> None:
    with make_client(tmp_path) as c:
        pid = wait_for(lambda: cluster_of(c).worker_pid)
        assert pid != os.getpid()
        assert pid in children(os.getpid())
        assert c.post("/v1/nodes", json=NODE).status_code == 201
        assert c.post("/v1/jobs", json={"name": "train", "cpu": "8", "memory": "64Gi", "gpus": 2}).status_code == 201
        wait_for(lambda: running(c, "train"))
        plan = assert_valid_plan(c)
        assert plan["version"] >= 1
        assert cluster_of(c).worker_pid == pid  # the same worker made every plan
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, own + 10)  # requests get busy cores first


def test_a_killed_worker_is_replaced_and_the_loop_goes_on(tmp_path: Path) -> None:
    with make_client(tmp_path) as c:
        assert c.post("/v1/nodes", json=NODE).status_code == 201
        assert c.post("/v1/jobs", json={"name": "first", "cpu": "2", "memory": "8Gi", "gpus": 1}).status_code == 201
        wait_for(lambda: running(c, "first"))
        first = cluster_of(c).worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert c.post("/v1/jobs", json={"name": "second", "cpu": "2", "memory": "8Gi", "gpus": 1}).status_code == 201
        wait_for(lambda: running(c, "second"), timeout=60)
        second = cluster_of(c).worker_pid
        assert second is not None and second != first
        assert gone(first)  # reaped, not a zombie
        assert metric(c, "optalloc_service_loop_worker_restarts_total") == 1.0
        assert running(c, "first")  # the new worker started from the published plan: nothing moved
        assert_valid_plan(c)
        assert c.get("/readyz").status_code == 200


def test_stopping_the_service_leaves_no_child_process(tmp_path: Path) -> None:
    before = children(os.getpid())
    with make_client(tmp_path) as c:
        pid = wait_for(lambda: cluster_of(c).worker_pid)
        assert c.post("/v1/nodes", json=NODE).status_code == 201
    assert gone(pid)
    assert children(os.getpid()) <= before


def test_in_thread_the_loop_has_no_worker_process(tmp_path: Path) -> None:
    before = children(os.getpid())
    with make_client(tmp_path, loop_in="thread") as c:
        assert c.post("/v1/nodes", json=NODE).status_code == 201
        assert c.post("/v1/jobs", json={"name": "etl", "cpu": "16", "memory": "32Gi"}).status_code == 201
        wait_for(lambda: running(c, "etl"))
        assert cluster_of(c).worker_pid is None
        assert children(os.getpid()) <= before
        assert_valid_plan(c)


def test_loop_in_names_a_process_or_a_thread(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loop_in"):
        Settings(db=tmp_path / "s.sqlite", loop_in="fiber")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_service_leaves_no_worker_behind(tmp_path: Path, how: str) -> None:
    server = Server(tmp_path / "state.sqlite", args=("--budget", "0.5", "--tick", "0.1")).start()
    try:
        assert server.proc is not None
        workers = wait_for(lambda: children(server.proc.pid))  # type: ignore[union-attr]
        assert len(workers) == 1
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.post("/v1/nodes", json=NODE).status_code == 201
    finally:
        if how == "SIGKILL":
            server.kill()
        else:
            server.stop()
    (worker,) = workers
    if how == "SIGTERM":
        assert server.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
        assert gone(worker)  # the service stopped it and reaped it before exiting
        return
    assert server.proc.returncode == -signal.SIGKILL
    # Orphaned by kill -9, the worker exits when its socket closes (its new parent reaps it).
    wait_for(lambda: gone(worker) or _state(worker) == "Z", timeout=15)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_a_hung_worker_is_killed_and_replaced() -> None:
    lost: list[str] = []
    stop = threading.Event()
    loop = InProcess(
        fast_controller(),
        lambda: Snapshot((), (), None, time.time()),
        stop=stop,
        on_restart=lost.append,
        step_timeout=1,
    )
    try:
        assert loop.start()
        hung = loop.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive, but answers nothing
        outcome = loop.step(time.time(), None, [])
        assert "no answer within 1s" in outcome.lost and outcome.plan is None
        assert lost and "killed" in lost[0]
        assert gone(hung)
        assert loop.pid not in (None, hung)
        loop.step_timeout = 60  # the new worker steps (given the time a busy machine may need)
        assert loop.step(time.time(), None, []).figures is not None
    finally:
        loop.close()
    assert loop.pid is None


def test_read_only_mappings_travel_to_the_worker_and_back() -> None:
    value = {"info": MappingProxyType({"gpus": (MappingProxyType({"job": 500}),)})}
    back = wire.loads(wire.dumps(value))
    assert back == {"info": {"gpus": ({"job": 500},)}}
    assert isinstance(back["info"], MappingProxyType) and isinstance(back["info"]["gpus"][0], MappingProxyType)
    assert gc.isenabled()  # held off only while reading
