"""The time-share benchmark scripts run end to end on a small case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("cvxpy")


@pytest.mark.traces
def test_the_scale_benchmark_runs_on_a_small_case(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "scale.md"
    args = ["--traces", str(traces), "--jobs", "40", "--gpus", "8,8,8", "--repeats", "1", "--parts", "2"]
    args += ["--policy", "max-min-fairness", "--policy", "fifo", "--out", str(out)]
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "timeshare_scale.py"), *args],
        check=True,
        capture_output=True,
        cwd=REPO / "benchmarks",
        timeout=600,
    )
    text = out.read_text()
    assert "| max-min-fairness | HIGHS | optimal |" in text
    assert "| fifo | numpy (greedy) | optimal |" in text
    assert "| max-min-fairness | 2 | local |" in text and "| max-min-fairness | 2 | serial |" in text


@pytest.mark.traces
def test_the_gavel_benchmark_runs_aware_and_agnostic_side_by_side(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "gavel.md"
    args = ["--traces", str(traces), "--cluster", "v100=4,p100=4,k80=4", "--jobs", "10", "--policy", "max-min-fairness"]
    args += ["--baseline", "fcfs+best-fit", "--round", "1800", "--tick", "1800", "--processes", "1", "--out", str(out)]
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "timeshare_gavel.py"), *args],
        check=True,
        capture_output=True,
        cwd=REPO / "benchmarks",
        timeout=600,
    )
    text = out.read_text()
    assert "| fcfs+best-fit |" in text and "| max-min-fairness-agnostic |" in text
    assert "x better |" in text  # the aware variant against its agnostic twin
