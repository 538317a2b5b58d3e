"""``optalloc rl train``, ``optalloc rl eval`` and ``optalloc simulate --policy dqn:MODEL.zip``, end to end;
bad input is one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("stable_baselines3")

from optalloc import Job, Node, Problem
from optalloc.cli import app, main
from optalloc.io import write_problem


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 jobs on one 2-GPU node, arriving in pairs: queues form."""
    node = Node("n0", cpu=16000, memory=65536, gpus=2, gpu_model="A")
    jobs = tuple(
        Job(f"j{i:02d}", cpu=1000, memory=1024, gpus=1, arrival=1800.0 * (i // 2), duration=900.0 * (1 + i % 4))
        for i in range(24)
    )
    path = tmp_path_factory.mktemp("rl") / "workload.json"
    write_problem(Problem((node,), jobs), path)
    return path


@pytest.fixture(scope="module")
def model(workload: Path) -> Path:
    out = workload.parent / "model.zip"
    args = ["rl", "train", "--trace", str(workload), "--steps", "120", "--window", "12", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--tick", "0", "--arms", "fcfs+best-fit,sjf+best-fit", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_rl_train_writes_the_model_with_its_settings_and_the_learning_curve(model: Path) -> None:
    from optalloc import rl

    meta = rl.read_meta(model)
    assert meta["algo"] == "dqn" and meta["steps"] == 120 and meta["seed"] == 3
    assert meta["env"]["arms"] == ["fcfs+best-fit", "sjf+best-fit"] and meta["env"]["window"] == 12
    assert meta["trained_on"]["trace"] == "workload.json" and meta["trained_on"]["starts"] == [0, 12]
    assert model.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert model.with_suffix(".csv").read_text().startswith("timesteps,reward,length,jct_s,wait_s")


def test_simulate_runs_a_trained_policy_beside_the_fixed_ones(model: Path, workload: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "--trace", str(workload), "--policy", f"dqn:{model}", "--policy", "fcfs+best-fit"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--tick", "0", "--verify", "--no-plots", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert [p["policy"] for p in data["policies"]] == [f"dqn:{model}", "fcfs+best-fit"]
    assert all(p["metrics"]["finished"] == 24 for p in data["policies"])


def test_rl_eval_prints_intervals_for_every_policy(model: Path, workload: Path, tmp_path: Path) -> None:
    tables = []
    for processes in ("1", "2"):
        out = tmp_path / f"eval{processes}.md"
        args = ["rl", "eval", "--trace", str(workload), "-p", f"dqn:{model}", "-p", "random", "-p", "sjf+best-fit"]
        args += ["-p", "random-job", "--window", "12", "--windows", "2", "--seeds", "2", "--tick", "0", "-q"]
        result = CliRunner().invoke(app, [*args, "--processes", processes, "--out", str(out)])
        assert result.exit_code == 0, result.output
        tables.append(out.read_text())
    for name in (f"`dqn:{model}`", "`random`", "`sjf+best-fit`", "`random-job`"):
        assert name in tables[0]
    assert "mean [95% interval] (median)" in tables[0]
    assert tables[1] == tables[0]  # side by side: the same runs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rl", "train", "--algo", "a2c", "--out", "{tmp}/m.zip"], "error: --algo: 'a2c' is not one of dqn, ppo"),
        (["rl", "train", "--out", "{tmp}/m.pt"], "error: --out:"),
        (["rl", "train", "--mode", "both", "--out", "{tmp}/m.zip"], "error: mode: 'both'"),
        (["rl", "train", "--arms", "fcfs+magic", "--out", "{tmp}/m.zip"], "error: arms: 'fcfs+magic'"),
        (["simulate", "--policy", "dqn:{tmp}/missing.zip", "--out", "{tmp}/o"], "error: No such file"),
        (["simulate", "--policy", "ppo:{model}", "--out", "{tmp}/o"], "error: policy: 'ppo:"),
        (["rl", "eval", "-p", "fcfs+best-fit", "--target", "speed"], "error: --target: 'speed'"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    args: list[str], message: str, workload: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = [a.format(tmp=tmp_path, model=model) for a in args]
    with pytest.raises(SystemExit) as stopped:
        main([*filled, "--trace", str(workload)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err


def test_the_console_script_reports_a_missing_model_in_one_line(workload: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optalloc", "rl", "eval", "--trace", str(workload), "-p", f"dqn:{tmp_path}/none.zip"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: No such file"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
