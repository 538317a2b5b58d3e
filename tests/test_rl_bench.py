"""The learned-scheduler benchmark's options on a slice: the job-choice agent, models reused from their
files, the screen of the fixed pairs, runs side by side, and the cache of finished runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

REPO = Path(__file__).resolve().parents[1]


def _bench(traces: Path, tmp_path: Path, out: str, *extra: str) -> str:
    args = ["--quick", "--steps", "0", "--ppo-steps", "0", "--job-steps", "32", "--seeds", "2"]
    args += ["--screen", "openb=1", "--models", str(tmp_path / "models"), "--cache", str(tmp_path / "runs.jsonl")]
    args += ["--img", str(tmp_path / "img")]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rl_eval.py"), "--traces", str(traces), *args, *extra],
        check=True,
        capture_output=True,
        cwd=REPO / "benchmarks",
        timeout=300,
        text=True,
    )
    return (tmp_path / out).read_text() if out else done.stdout


def _tables(report: str) -> list[str]:
    """The policies' rows, not the training table (whose time column says where the model came from)."""
    return [line for line in report.splitlines() if line.startswith("| `")]


def test_the_benchmark_trains_the_job_choice_agent_screens_and_reuses_models_and_runs(
    traces: Path, tmp_path: Path
) -> None:
    first = _bench(traces, tmp_path, "a.md", "--processes", "2", "--out", str(tmp_path / "a.md"))
    assert "| dqn-job | job choice, 8 candidates, best-fit placement | 32 |" in first
    assert "`dqn:dqn-job.zip`" in first and "`random-job`" in first and "`rolling-horizon`" in first
    assert "3 fixed pairs screened on seed 0 (every window), then the 1 best of them on every seed" in first
    assert "The screen: every fixed pair on seed 0" in first and "whole selector" in first
    again = _bench(traces, tmp_path, "b.md", "--reuse", "--out", str(tmp_path / "b.md"))
    assert "(reused: the time saved in the file)" in again
    assert "of the runs read from `--cache runs.jsonl`" in again
    assert _tables(again) == _tables(first)
    cost = _bench(traces, tmp_path, "", "--reuse", "--cost-only", "--out", str(tmp_path / "c.md"))
    assert "each model alone in one process" in cost and "dqn:dqn-job.zip on gavel" in cost
    assert "ms per controller step" in cost and not (tmp_path / "c.md").exists()
