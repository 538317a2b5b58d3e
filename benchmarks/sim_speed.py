"""Simulator benchmark: how many events per second the simulator handles with heuristic policies.

Run: ``python benchmarks/sim_speed.py [--traces DIR] [--runs 5] [--controller-runs 3]
[--out benchmarks/results/sim_speed.md]``

Events = arrivals + completions + controller ticks (the definition of issue 7); the table also gives
arrivals + completions per second alone, since ticks are the cheap part. Two workloads: the Gavel msr
trace on 32 V100 + 32 P100 + 32 K80 (tick 300 s) and the openb default replay (12 nodes, arrivals / 8,
tick 60 s, stopped at the last arrival). Two engines: ``controller`` (every decision by the production
step) and ``direct`` (the same heuristic decisions on one persistent placer). Each figure is the median
over the runs, in one process; the machine is shared, so figures move by tens of percent run to run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

from sim_common import REPO, command_line, default_traces, machine

from optalloc.sim import Scenario, SimConfig, gavel_scenario, openb_scenario, policy, simulate

POLICIES = ("fcfs+best-fit", "sjf+best-fit", "fcfs+fgd")


def measure(scenario: Scenario, name: str, config: SimConfig, runs: int) -> dict[str, float]:
    rates, pure, walls, cpu_rates = [], [], [], []
    result = None
    for _ in range(runs):
        cpu_start = time.process_time()
        result = simulate(scenario, policy(name), config)
        cpu = time.process_time() - cpu_start
        c = result.counters
        rates.append(c.events / c.wall_time)
        pure.append((c.arrivals + c.completions) / c.wall_time)
        walls.append(c.wall_time)
        cpu_rates.append(c.events / cpu if cpu > 0 else float("nan"))
    assert result is not None
    c = result.counters
    return {
        "events": c.events,
        "arrivals": c.arrivals,
        "completions": c.completions,
        "ticks": c.ticks,
        "steps": c.steps,
        "wall": statistics.median(walls),
        "rate": statistics.median(rates),
        "cpu_rate": statistics.median(cpu_rates),
        "pure": statistics.median(pure),
        "avg_jct": result.metrics.avg_jct,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--runs", type=int, default=5, help="runs of the direct engine")
    parser.add_argument("--controller-runs", type=int, default=3, help="runs of the controller engine (Gavel)")
    parser.add_argument("--openb-controller-runs", type=int, default=1, help="runs of the controller on openb")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sim_speed.md"))
    args = parser.parse_args(argv)
    traces = Path(args.traces)
    gavel_dir = traces / "gavel"
    pods = traces / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
    if not pods.exists():
        print(f"traces not found under {traces}", file=sys.stderr)
        return 2
    gavel = gavel_scenario(
        gavel_dir / "msr" / "seed=0" / "0e4a51.trace",
        gavel_dir / "simulation_throughputs.json",
        {"v100": 32, "p100": 32, "k80": 32},
    )
    openb = openb_scenario(pods, nodes=12, compress=8.0)
    last = float(openb.problem.job_arrival.max())
    workloads = [
        ("Gavel msr, 96 GPUs, tick 300 s", gavel, SimConfig(tick=300.0), args.controller_runs),
        (
            "openb default / 8, 12 nodes, tick 60 s",
            openb,
            SimConfig(tick=60.0, until=last),
            args.openb_controller_runs,
        ),
    ]
    rows = []
    for label, scenario, config, controller_runs in workloads:
        for name in POLICIES:
            for engine, runs in (("direct", args.runs), ("controller", controller_runs)):
                if runs <= 0:
                    continue
                cfg = dataclasses.replace(config, engine=engine)
                m = measure(scenario, name, cfg, runs)
                rows.append((label, name, engine, runs, m))
                print(
                    f"{label} {name} {engine}: {m['rate']:,.0f} events/s ({m['pure']:,.0f} arr+compl/s)",
                    file=sys.stderr,
                    flush=True,
                )
    lines = [
        "# Simulator speed with heuristic policies",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}.",
        "",
        "Events = arrivals + completions + ticks (each tick carries an observation to the controller). "
        "`direct` = the heuristic's decisions on one persistent placer (identical to the controller's for "
        "best-fit: same JCTs below); `controller` = every decision by `optalloc.adaptive.controller.step`. "
        "Median over the runs. `events/CPU s` divides by the CPU time of this process instead of wall time: what "
        "a run costs, unaffected by other work on the machine (wall-clock rates drop when it is busy).",
        "",
        "| workload | policy | engine | runs | events (arrivals / completions / ticks) | steps | wall s | events/s | "
        "events/CPU s | arrivals+completions/s | avg JCT (h) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, name, engine, runs, m in rows:
        lines.append(
            f"| {label} | {name} | {engine} | {runs} | {m['events']:,} ({m['arrivals']:,} / {m['completions']:,} / "
            f"{m['ticks']:,}) | {m['steps']:,} | {m['wall']:.2f} | {m['rate']:,.0f} | {m['cpu_rate']:,.0f} | "
            f"{m['pure']:,.0f} | "
            f"{m['avg_jct'] / 3600:.2f} |"
        )
    direct = [m["rate"] for _, _, engine, _, m in rows if engine == "direct"]
    if direct:
        lines += [
            "",
            f"Target (issue 7): >= 10,000 events/s with heuristic policies. Direct engine, every workload and "
            f"policy: {min(direct):,.0f} to {max(direct):,.0f} events/s (median {statistics.median(direct):,.0f}).",
        ]
    lines.append("")
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
