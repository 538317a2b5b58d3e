"""State that survives: ``kill -9`` a real ``optalloc serve`` process and start it again on the same file."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_support import TOKEN, Server, assert_valid_plan, wait_for

ARGS = ("--budget", "0.5", "--tick", "0.1")


def settled(client: httpx.Client) -> dict[str, Any] | None:
    """The plan once every job has been taken in by the loop (none pending)."""
    jobs = client.get("/v1/jobs", params={"limit": 10_000}).json()["jobs"]
    if any(j["state"] == "pending" for j in jobs):
        return None
    return dict(client.get("/v1/plan").json())


def steady(client: httpx.Client, quiet: float = 1.0) -> dict[str, Any] | None:
    """The plan once its version stayed the same for ``quiet`` seconds."""
    first = client.get("/v1/plan").json()
    time.sleep(quiet)
    again = dict(client.get("/v1/plan").json())
    return again if again["version"] == first["version"] else None


def placements(plan: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (p["job"], p["replica"], p["node"], tuple(p["gpus"]), p["gpu_milli"]) for p in plan["allocation"]["placements"]
    )


@pytest.mark.slow
def test_kill_9_and_restart_keeps_jobs_nodes_and_plan(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    server = Server(db, args=ARGS).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for i in range(4):
                node = {"name": f"n{i}", "cpu": "32", "memory": "128Gi", "gpus": 4, "gpu_model": "A100"}
                assert c.post("/v1/nodes", json=node).status_code == 201
            assert c.post("/v1/nodes/n3/drain").status_code == 200
            jobs = [{"name": f"j{i}", "cpu": "2", "memory": "8Gi", "gpus": 1 + i % 3} for i in range(10)]
            jobs += [{"name": f"s{i}", "cpu": "1", "memory": "2Gi", "gpu_milli": 250} for i in range(6)]
            for job in jobs:
                assert c.post("/v1/jobs", json=job).status_code == 201
            assert c.delete("/v1/jobs/j0").status_code == 204
            wait_for(lambda: settled(c), timeout=30)
            before = wait_for(lambda: steady(c), timeout=30)
            assert before["version"] >= 1
            jobs_before = c.get("/v1/jobs", params={"limit": 10_000}).json()["jobs"]
            nodes_before = c.get("/v1/nodes").json()["nodes"]
        server.kill()
        assert server.proc is not None and server.proc.returncode == -9

        server = Server(db, port=server.port, args=ARGS).start()
        with httpx.Client(base_url=server.url, timeout=10) as c:
            after = c.get("/v1/plan").json()
            assert after["version"] == before["version"], (after["trigger"], after["changes"])
            assert placements(after) == placements(before)
            assert after["allocation"]["unplaced"] == before["allocation"]["unplaced"]
            jobs_after = c.get("/v1/jobs", params={"limit": 10_000}).json()["jobs"]
            assert [(j["name"], j["job"], j["state"]) for j in jobs_after] == [
                (j["name"], j["job"], j["state"]) for j in jobs_before
            ]
            assert c.get("/v1/jobs/j0").status_code == 404
            assert c.get("/v1/nodes").json()["nodes"] == nodes_before
            assert c.get("/v1/nodes/n3").json()["drained"] is True
            # The loop goes on from there: still the same plan a few ticks later, and it verifies.
            wait_for(lambda: c.get("/v1/cluster").json()["last_solve"]["version"] >= after["version"])
            assert placements(c.get("/v1/plan").json()) == placements(before)
            assert_valid_plan(c)
    finally:
        server.kill()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.slow
def test_kill_9_under_load_loses_no_accepted_submit(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    args = (*ARGS, "--token-file", str(token))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    server = Server(db, args=args).start()
    accepted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5, headers=headers) as c:
            for i in range(2000):
                if stop.is_set():
                    return
                name = f"c{k}-{i}"
                try:
                    r = c.post("/v1/jobs", json={"name": name, "cpu": 100, "memory": 64})
                except httpx.HTTPError:
                    return  # the server died under us: this submit was never answered
                if r.status_code in (200, 201):
                    with lock:
                        accepted.append(name)

    try:
        with httpx.Client(base_url=server.url, timeout=10, headers=headers) as c:
            for i in range(8):
                c.post("/v1/nodes", json={"name": f"n{i}", "cpu": "64", "memory": "256Gi", "gpus": 8})
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        wait_for(lambda: len(accepted) >= 600, timeout=60, every=0.01)
        server.kill()
        stop.set()
        for t in threads:
            t.join(10)
        server = Server(db, port=server.port, args=args).start()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            known = {j["name"] for j in c.get("/v1/jobs", params={"limit": 10_000}).json()["jobs"]}
            missing = set(accepted) - known
            assert not missing, f"{len(missing)} accepted submits lost, e.g. {sorted(missing)[:5]}"
            assert len(known) >= len(accepted)
            wait_for(lambda: settled(c), timeout=60)
            assert_valid_plan(c)
    finally:
        stop.set()
        server.kill()
