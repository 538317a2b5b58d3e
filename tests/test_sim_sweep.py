"""Sweeps: the same runs serially, in a local process pool and as Ray tasks give the same outcomes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optalloc import ProblemError
from optalloc.cli import app
from optalloc.io import synthetic, write_problem
from optalloc.sim import (
    FailureModel,
    Run,
    Scenario,
    SimConfig,
    compare,
    grid,
    policies,
    sweep,
)

# Deterministic policies: heuristics through the controller step and through the direct engine.
DETERMINISTIC = ["fcfs+best-fit", "sjf+fgd", "fcfs+dot-product"]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    problem = synthetic.philly_like(jobs=60, nodes=3, seed=4)
    return Scenario.from_problem(problem, "philly-60")


def _config(seed: int = 0, **changes: object) -> SimConfig:
    return SimConfig(tick=3600.0, seed=seed, **changes)  # type: ignore[arg-type]


def _outcomes(results: list) -> list[dict]:  # type: ignore[type-arg]
    return [r.outcome() for r in results]


@pytest.mark.slow
def test_a_local_pool_gives_the_serial_outcomes_in_the_order_given(scenario: Scenario) -> None:
    runs = grid([scenario], policies(DETERMINISTIC), [_config(0), _config(1)])
    serial = sweep(runs)
    local = sweep(runs, executor="local", processes=2)
    assert [r.policy for r in local] == [r.policy for r in serial] == [p for p in DETERMINISTIC for _ in (0, 1)]
    assert _outcomes(local) == _outcomes(serial)
    direct = [replace(run, config=replace(run.config, engine="direct")) for run in runs]
    assert _outcomes(sweep(direct, executor="local", processes=2)) == _outcomes(sweep(direct))


def test_outcomes_leave_out_only_the_wall_clock(scenario: Scenario) -> None:
    (a,) = compare(scenario, policies(["fcfs+best-fit"]), _config())
    again = compare(scenario, policies(["fcfs+best-fit"]), _config())[0]
    assert a.outcome() == again.outcome()
    assert "wall_time" not in a.outcome()["metrics"] and "avg_jct" in a.outcome()["metrics"]
    other_seed = compare(scenario, policies(["fcfs+best-fit"]), _config(seed=9))[0]
    assert other_seed.outcome()["timeline"] != a.outcome()["timeline"]  # the usage draws differ


def test_a_stopped_sweep_returns_what_finished(scenario: Scenario) -> None:
    runs = grid([scenario], policies(DETERMINISTIC), [_config()])
    stop = threading.Event()
    for executor, processes in (("serial", None), ("local", 1)):
        stop.clear()
        seen: list[str] = []

        def finished(p, seen=seen):  # type: ignore[no-untyped-def]
            if p.done >= p.total:
                seen.append(p.policy)
                stop.set()

        results = sweep(runs, executor=executor, processes=processes, progress=finished, stop=stop)
        assert results[0] is not None and results[0].policy == "fcfs+best-fit"
        assert results[1:] == [None, None], executor


def test_a_failing_run_raises_its_error_from_the_pool(scenario: Scenario) -> None:
    bad = _config(failures=FailureModel(outages=(("no-such-node", 10.0, 60.0),)))
    runs = [Run(scenario, policies(["fcfs+best-fit"])[0], bad)]
    with pytest.raises(ProblemError, match="no-such-node"):
        sweep(runs, executor="local", processes=1)


def test_sweep_arguments_are_checked(scenario: Scenario) -> None:
    runs = grid([scenario], policies(["fcfs+best-fit"]), [_config()])
    with pytest.raises(ProblemError, match="executor"):
        sweep(runs, executor="cluster")
    with pytest.raises(ProblemError, match="processes"):
        sweep(runs, processes=2)  # serial
    with pytest.raises(ProblemError, match="processes"):
        sweep(runs, executor="local", processes=0)
    with pytest.raises(ProblemError, match="ray_address"):
        sweep(runs, executor="local", ray_address="127.0.0.1:6379")
    with pytest.raises(ProblemError, match="runs"):
        sweep(["fcfs+best-fit"])  # type: ignore[list-item]
    assert sweep([]) == []


# Ray ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_give_the_serial_outcomes(ray_local, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    other = Scenario.from_problem(synthetic.philly_like(jobs=40, nodes=2, seed=5), "philly-40")
    runs = grid([scenario, other], policies(DETERMINISTIC), [_config(0), _config(1)])
    on_ray = sweep(runs, executor="ray")
    serial = sweep(runs)
    assert [(r.scenario, r.policy) for r in on_ray] == [(r.scenario, r.policy) for r in serial]
    assert _outcomes(on_ray) == _outcomes(serial)
    # an exact policy runs too (its answers depend on its wall-clock budget: only that it completes)
    exact = sweep([Run(scenario, policies(["rolling-horizon-fcfs"], budget=0.2)[0], _config())], executor="ray")
    assert exact[0] is not None and exact[0].metrics.finished + exact[0].metrics.unfinished == 60


@pytest.mark.slow
def test_a_failing_ray_task_raises_its_error(ray_local, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    bad = _config(failures=FailureModel(outages=(("no-such-node", 10.0, 60.0),)))
    with pytest.raises(ProblemError, match="no-such-node"):
        sweep([Run(scenario, policies(["fcfs+best-fit"])[0], bad)], executor="ray")


@pytest.mark.slow
def test_simulate_with_processes_or_ray_writes_the_serial_report(ray_local, scenario: Scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    problem = tmp_path / "p.json"
    write_problem(synthetic.philly_like(jobs=30, nodes=2, seed=6), problem)
    base = ["simulate", "--trace", str(problem), "--tick", "600", "--no-plots", "-q"]
    base += ["--policy", "fcfs+best-fit", "--policy", "sjf+fgd"]
    figures = {}
    for name, extra in (("serial", []), ("local", ["--processes", "2"]), ("ray", ["--ray"])):
        out = tmp_path / name
        result = CliRunner().invoke(app, [*base, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        figures[name] = _report_figures(out)
    assert figures["local"] == figures["serial"] and figures["ray"] == figures["serial"]


def _report_figures(out: Path) -> dict:  # type: ignore[type-arg]
    """results.json and jobs.csv less the wall-clock figures and the command line."""
    from optalloc.sim.result import WALL_CLOCK

    def strip(x):  # type: ignore[no-untyped-def]
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in WALL_CLOCK and k != "command"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return {"results": strip(json.loads((out / "results.json").read_text())), "jobs": (out / "jobs.csv").read_text()}


def test_simulate_refuses_processes_with_ray(tmp_path: Path) -> None:
    problem = tmp_path / "p.json"
    write_problem(synthetic.philly_like(jobs=5, nodes=1, seed=6), problem)
    for extra in (["--ray", "--processes", "2"], ["--ray-address", " "]):
        args = ["simulate", "--trace", str(problem), "--out", str(tmp_path / "o"), "-q", *extra]
        proc = subprocess.run([sys.executable, "-m", "optalloc", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
        assert extra[-2] in lines[0] or "--processes" in lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_simulate_reaches_a_ray_head_by_address_or_environment(tmp_path: Path) -> None:
    """A head started with ``ray start --head`` on loopback; ``optalloc simulate`` connects to it with
    --ray-address, and with --ray and OPTALLOC_RAY_ADDRESS, and writes the serial run's figures."""
    pytest.importorskip("ray")
    ray_cli = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    # Token authentication off for this loopback head and its drivers: Ray enables it only for drivers that
    # find a local cluster themselves, never for an explicit address (a driver would need RAY_AUTH_MODE=token
    # and the head's token), and this test must not depend on what an earlier test left in the environment.
    env = {**os.environ, "RAY_TMPDIR": folder, "RAY_AUTH_MODE": "disabled"}
    env.pop("OPTALLOC_RAY_ADDRESS", None)
    problem = tmp_path / "p.json"
    write_problem(synthetic.philly_like(jobs=30, nodes=2, seed=6), problem)
    optalloc = [sys.executable, "-m", "optalloc", "simulate", "--trace", str(problem), "--tick", "600"]
    optalloc += ["--no-plots", "--policy", "fcfs+best-fit", "--policy", "sjf+fgd"]
    serial = subprocess.run([*optalloc, "--out", str(tmp_path / "serial")], env=env, capture_output=True, text=True)
    assert serial.returncode == 0, serial.stderr
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(120):  # the head listens within a minute or so
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        address = f"127.0.0.1:{port}"
        by_option = subprocess.run(
            [*optalloc, "--out", str(tmp_path / "option"), "--ray-address", address],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert by_option.returncode == 0, by_option.stderr[-2000:]
        by_env = subprocess.run(
            [*optalloc, "--out", str(tmp_path / "env"), "--ray"],
            env={**env, "OPTALLOC_RAY_ADDRESS": address}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert by_env.returncode == 0, by_env.stderr[-2000:]
        for run in (by_option, by_env):  # the head's runtime, not a local one started instead
            assert f":{port}, 2 CPUs" in run.stderr, run.stderr[-2000:]  # Ray names the node by its IP
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # this head's process group only, not other Ray runtimes
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(folder, ignore_errors=True)
    expected = _report_figures(tmp_path / "serial")
    assert _report_figures(tmp_path / "option") == expected
    assert _report_figures(tmp_path / "env") == expected
