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
