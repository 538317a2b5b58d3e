"""Shared helpers of the simulator benchmarks (sim_gavel.py, sim_openb.py, sim_speed.py)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from optalloc.core import usable_cpus
from optalloc.sim import Policy, Progress, Run, Scenario, SimConfig, SimResult, simulate, sweep

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
    return f"Python {platform.python_version()}, {platform.machine()}, {usable_cpus()} cores (shared with other work)"


def run_all(scenario: Scenario, chosen: Sequence[Policy], config: SimConfig, *, processes: int = 1) -> list[SimResult]:
    """Simulate each policy, printing one progress line per policy to stderr; results in the order given.

    ``processes > 1`` runs policies side by side in that many forked processes (``optalloc.sim.sweep``,
    the exact policies, the slow ones, first). Simulated outcomes do not depend on it except through the
    solvers' time budgets (each process has one core to itself on a machine with as many cores); wall
    times do.
    """
    if processes <= 1 or len(chosen) <= 1:
        return [_simulate_one(scenario, p, config) for p in chosen]
    runs = [Run(scenario, p, config) for p in chosen]
    results = sweep(runs, executor="local", processes=processes, progress=_done)
    return [r for r in results if r is not None]


def _done(progress: Progress) -> None:
    print(f"{progress.policy}: done ({progress.done}/{progress.total} jobs)", file=sys.stderr, flush=True)


def _simulate_one(scenario: Scenario, p: Policy, config: SimConfig) -> SimResult:
    start = time.perf_counter()
    last = [start]

    def report(progress: Progress) -> None:
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
    return result
