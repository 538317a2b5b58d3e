"""``optalloc simulate`` end to end, through the registered command of the ``optalloc`` app."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from optalloc import Job, Node, Problem
from optalloc.cli import app as optalloc_app
from optalloc.io import write_problem


@pytest.fixture
def app() -> typer.Typer:
    return optalloc_app


@pytest.fixture
def tiny_problem(tmp_path: Path) -> Path:
    nodes = (
        Node("n0", cpu=16000, memory=65536, gpus=2, gpu_model="A"),
        Node("n1", cpu=16000, memory=65536, gpus=2, gpu_model="A"),
    )
    jobs = tuple(
        Job(f"j{i}", cpu=1000, memory=1024, gpus=1 + i % 2, arrival=60.0 * i, duration=300.0 + 200.0 * (i % 3))
        for i in range(10)
    )
    path = tmp_path / "tiny.json"
    write_problem(Problem(nodes, jobs), path)
    return path


def test_simulate_writes_results_plots_and_a_report(app: typer.Typer, tiny_problem: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--trace", str(tiny_problem), "--policy", "fcfs+best-fit", "--policy", "sjf+fgd", "--out", str(out)]
    result = CliRunner().invoke(app, ["simulate", *args, "--policy", "rolling-horizon", "--budget", "0.2", "--verify"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert [p["policy"] for p in data["policies"]] == ["fcfs+best-fit", "sjf+fgd", "rolling-horizon"]
    assert all(p["metrics"]["finished"] == 10 for p in data["policies"])
    assert data["scenario"]["jobs"] == 10
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["policy"] for r in rows] == ["fcfs+best-fit", "sjf+fgd", "rolling-horizon"]
    assert float(rows[0]["avg_jct"]) > 0
    jobs = list(csv.DictReader((out / "jobs.csv").open()))
    assert len(jobs) == 30 and {r["policy"] for r in jobs} == {"fcfs+best-fit", "sjf+fgd", "rolling-horizon"}
    for png in ("sim_utilisation.png", "sim_jct_cdf.png", "sim_queue.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| fcfs+best-fit |" in report and "| rolling-horizon |" in report
    assert "![sim_jct_cdf.png](sim_jct_cdf.png)" in report
    assert "Policies compared" in result.output  # the summary table


def test_simulate_replays_a_gavel_trace_slice(app: typer.Typer, traces: Path, tmp_path: Path) -> None:
    trace = traces / "gavel" / "msr" / "seed=0" / "0e4a51.trace"
    out = tmp_path / "gavel"
    args = ["--trace", str(trace), "--cluster", "v100=8,p100=8,k80=8", "--jobs", "25", "--tick", "600"]
    result = CliRunner().invoke(
        app, ["simulate", *args, "--policy", "fcfs+best-fit", "--out", str(out), "--quiet", "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["scenario"]["gpus"] == 24 and data["scenario"]["jobs"] == 25
    assert data["policies"][0]["metrics"]["completion_rate"] == 1.0
    assert not (out / "sim_jct_cdf.png").exists()


def test_bad_input_is_one_line_naming_the_option_and_exit_2(tiny_problem: Path, tmp_path: Path) -> None:
    bad = tmp_path / "jobs.txt"
    bad.write_text("nothing")
    for args in (["--trace", str(bad)], ["--trace", str(tiny_problem), "--policy", "nope"]):
        proc = subprocess.run(
            [sys.executable, "-m", "optalloc", "simulate", *args, "--out", str(tmp_path / "o"), "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert ("--trace" if args[1] == str(bad) else "policy") in lines[0]
        assert "Traceback" not in proc.stderr


def test_the_summary_keeps_every_figure_whole_in_an_80_column_terminal(tiny_problem: Path) -> None:
    from rich.console import Console

    from optalloc.cli.simulate import _summary
    from optalloc.io import read_problem
    from optalloc.sim import Scenario, SimConfig, compare, policies

    scenario = Scenario.from_problem(read_problem(tiny_problem), "tiny")
    results = compare(scenario, policies(["fcfs+best-fit", "rolling-horizon-packing"]), SimConfig(tick=60.0))
    console = Console(width=80, record=True)
    console.print(_summary(results))
    text = console.export_text()
    assert "…" not in text
    assert all(name in text for name in ("fcfs+best-fit", "rolling-horizon-packing", "ev/s", "alloc %"))
    assert all(len(line) <= 80 for line in text.splitlines())
