"""Shared helpers of the simulator benchmarks (sim_gavel.py, sim_openb.py, sim_speed.py)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from optalloc.adaptive.sim_policies import Policy
from optalloc.adaptive.sim_workloads import Scenario
from optalloc.adaptive.simulator import Progress, SimConfig, SimResult, simulate

REPO = Path(__file__).resolve().parents[1]


def default_traces() -> str:
    return os.environ.get("OPTALLOC_TRACES", str(REPO.parent / "shared" / "data" / "traces"))


def command_line() -> str:
    """The command that ran this benchmark, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", script_text, *(shlex.quote(a) for a in sys.argv[1:])])


def machine() -> str:
    return f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores (shared with other work)"


def run_all(scenario: Scenario, chosen: Sequence[Policy], config: SimConfig) -> list[SimResult]:
    """Simulate each policy in turn, printing one progress line per policy to stderr."""
    out = []
    for p in chosen:
        start = time.perf_counter()
        last = [start]

        def report(progress: Progress, last: list[float] = last, start: float = start) -> None:
            now = time.perf_counter()
            if now - last[0] > 30:
                last[0] = now
                print(
                    f"  {progress.policy}: {progress.done}/{progress.total} jobs, {progress.events} events, "
                    f"{now - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

        result = simulate(scenario, p, config, progress=report)
        m = result.metrics
        print(
            f"{p.name}: avg JCT {m.avg_jct / 3600:.2f} h, GPU alloc {100 * m.gpu_allocation:.2f}%, "
            f"{m.events} events in {m.wall_time:.1f} s, solver {m.solver_time:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        out.append(result)
    return out
