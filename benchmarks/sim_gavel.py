"""Simulator benchmark: the Gavel msr trace (seed=0) on a heterogeneous V100/P100/K80 cluster.

Run: ``python benchmarks/sim_gavel.py [--traces DIR] [--cluster v100=32,p100=32,k80=32] [--tick 300]
[--budget 1.0] [--policy all] [--out benchmarks/results/sim_gavel.md] [--img docs/img] [--dir DIR]
[--processes 2]``

Every policy drives the production controller step (engine ``controller``). Writes the comparison
table, the JCT ratios against FCFS + best-fit, the solver cost of the exact policies, and the plots
``<img>/sim_gavel_{utilisation,jct_cdf,queue}.png``; ``--dir`` also writes the full results
(JSON, CSV, report) there. ``--processes N`` simulates N policies side by side (forked processes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim_common import REPO, command_line, default_traces, machine, run_all

from optalloc.sim import SimConfig, gavel_scenario, parse_counts, policies, write_plots
from optalloc.sim import report as sim_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--cluster", default="v100=32,p100=32,k80=32")
    parser.add_argument("--tick", type=float, default=300.0)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sim_gavel.md"))
    parser.add_argument("--img", default=str(REPO / "docs" / "img"))
    parser.add_argument("--dir", default=None)
    parser.add_argument("--processes", type=int, default=1, help="policies simulated side by side")
    args = parser.parse_args(argv)
    folder = Path(args.traces) / "gavel"
    trace = folder / "msr" / "seed=0" / "0e4a51.trace"
    if not trace.exists():
        print(f"trace not found: {trace} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    counts = parse_counts(args.cluster)
    scenario = gavel_scenario(trace, folder / "simulation_throughputs.json", counts)
    if args.jobs:
        scenario = scenario.head(args.jobs)
    config = SimConfig(tick=args.tick, seed=0)
    chosen = policies(args.policy or ["all"], budget=args.budget, durations=[j.duration or 0.0 for j in scenario.jobs])
    results = run_all(scenario, chosen, config, processes=args.processes)
    if args.dir:
        sim_report.write(args.dir, scenario, results, config, command=command_line())
    Path(args.img).mkdir(parents=True, exist_ok=True)
    write_plots(args.img, results, prefix="sim_gavel_")

    by = {r.policy: r for r in results}
    base = by.get("fcfs+best-fit")
    d = scenario.describe()
    lines = [
        "# Simulator: Gavel msr trace on a heterogeneous cluster",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}.",
        "",
        f"Scenario: {d['description']}. {d['nodes']} servers, {d['gpus']} GPUs, {d['jobs']} jobs over "
        f"{d['span_s'] / 86400:.1f} days of arrivals. Offered load (GPU-seconds requested over the arrival "
        f"span, per GPU of the cluster) is {scenario.offered_load('v100'):.2f} if every job ran at its V100 "
        f"speed and {scenario.offered_load('k80'):.2f} at its K80 speed"
        + (
            (": the queue builds up" if base.metrics.waiting_ratio > 0.5 else ": the queue does NOT build up")
            if base
            else ""
        )
        + (
            f" (FCFS + best-fit: {base.metrics.avg_waiting:.1f} jobs wait on average for "
            f"{base.metrics.avg_running:.1f} running, waiting ratio {base.metrics.waiting_ratio:.2f})"
            if base
            else ""
        )
        + ".",
        "",
        f"Simulation: controller tick {config.tick:g} s with observations (usage profile `typical`), steps at "
        f"every event; restart penalty {config.restart_penalty:g} s, progress kept; seed 0; exact policies "
        f"budget {args.budget:g} s per re-solve. Every policy runs through `optalloc.adaptive.controller.step`.",
        "",
        sim_report.table(results, baseline="fcfs+best-fit" if base else None),
    ]
    if base:
        lines.append("Average JCT relative to FCFS + best-fit (target: rolling horizon <= 0.7x):")
        lines.append("")
        for name in ("rolling-horizon", "horizon-model", "cpsat-packing", "sjf+best-fit"):
            if name in by:
                ratio = by[name].metrics.avg_jct / base.metrics.avg_jct
                lines.append(
                    f"- {name}: {ratio:.2f}x ({by[name].metrics.avg_jct / 3600:.1f} h vs "
                    f"{base.metrics.avg_jct / 3600:.1f} h)"
                )
        lines.append("")
    exact = [r for r in results if r.kind != "heuristic"]
    if exact:
        lines += ["Solver cost of the exact policies (one run each):", ""]
        lines += [
            "| policy | solver time (s) | simulated hours | solver s per simulated hour | re-solves | "
            "fallbacks | share of wall time |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in exact:
            m = r.metrics
            hours = (m.end - m.start) / 3600
            lines.append(
                f"| {r.policy} | {m.solver_time:.1f} | {hours:,.0f} | {m.solver_time_per_hour:.3f} | "
                f"{r.counters.resolves} | {r.counters.fallbacks} | {100 * m.solver_time_share:.0f}% |"
            )
        lines.append("")
    lines += [
        "Plots: `docs/img/sim_gavel_utilisation.png`, `docs/img/sim_gavel_jct_cdf.png`, "
        "`docs/img/sim_gavel_queue.png`.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
