"""Simulator benchmark: the openb default pod list replayed under load on a sample of its node shapes.

Run: ``python benchmarks/sim_openb.py [--traces DIR] [--nodes 12] [--compress 8] [--skip 0] [--jobs N]
[--tick 60] [--budget 1.0] [--policy all] [--out benchmarks/results/sim_openb.md] [--img docs/img] [--dir DIR]
[--processes 2] [--repeat 1]``. The plots are ``<img>/<stem of --out>_{utilisation,jct_cdf,queue}.png``.

Load is added twice, and both are stated in the output: a stratified sample of ``--nodes`` nodes in the
GPU-shape mix of the openb cluster, and inter-arrival times divided by ``--compress``. The run stops at
the last arrival, so that every figure describes the loaded period (a long tail of a few long pods
would otherwise dominate the time averages). Every policy drives the production controller step.
``--processes N`` simulates N policies side by side (forked processes; the exact ones start first).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

from sim_common import REPO, command_line, default_traces, machine, run_all

from optalloc.sim import Policy, SimConfig, openb_scenario, policies, write_plots
from optalloc.sim import report as sim_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--compress", type=float, default=8.0)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--tick", type=float, default=60.0)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sim_openb.md"))
    parser.add_argument("--img", default=str(REPO / "docs" / "img"))
    parser.add_argument("--dir", default=None)
    parser.add_argument("--processes", type=int, default=1, help="policies simulated side by side")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each exact policy (wall-clock budgets: outcomes move run to run)"
    )
    args = parser.parse_args(argv)
    pods = Path(args.traces) / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
    if not pods.exists():
        print(f"trace not found: {pods} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    scenario = openb_scenario(pods, nodes=args.nodes, compress=args.compress)
    if args.skip or args.jobs:
        scenario = scenario.select(args.skip, args.jobs)
    until = float(scenario.problem.job_arrival.max())
    config = SimConfig(tick=args.tick, seed=0, until=until)
    chosen = policies(args.policy or ["all"], budget=args.budget, durations=[j.duration or 0.0 for j in scenario.jobs])
    if args.repeat > 1:  # heuristics are deterministic: once each; exact policies as "<name> #k"

        def runs(p: Policy) -> list[Policy]:
            if p.kind == "heuristic":
                return [p]
            return [dataclasses.replace(p, name=f"{p.name} #{k}") for k in range(1, args.repeat + 1)]

        chosen = [run for p in chosen for run in runs(p)]
    results = run_all(scenario, chosen, config, processes=args.processes)
    if args.dir:
        sim_report.write(args.dir, scenario, results, config, command=command_line())
    Path(args.img).mkdir(parents=True, exist_ok=True)
    prefix = Path(args.out).stem + "_"  # sim_openb_utilisation.png for the default --out
    write_plots(args.img, results, prefix=prefix)

    heuristics = [r for r in results if r.kind == "heuristic"]
    best = max(heuristics, key=lambda r: r.metrics.gpu_allocation) if heuristics else None
    d = scenario.describe()
    lines = [
        "# Simulator: openb default replayed under load",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}.",
        "",
        f"Scenario: {d['description']}. {d['nodes']} nodes, {d['gpus']} GPUs, {d['jobs']} pods over "
        f"{d['span_s'] / 3600:.1f} h of (compressed) arrivals; the run stops at the last arrival "
        f"(t = {until:,.0f} s) and every figure is over that loaded period.",
        "",
        f"Simulation: controller tick {config.tick:g} s with observations (usage profile `typical`), steps at "
        f"every event; restart penalty {config.restart_penalty:g} s, progress kept; seed 0; exact policies "
        f"budget {args.budget:g} s per re-solve. Every policy runs through `optalloc.adaptive.controller.step`.",
        "",
        sim_report.table(
            results, baseline="fcfs+best-fit" if any(r.policy == "fcfs+best-fit" for r in results) else None
        ),
    ]
    if best is not None:
        lines += [
            f"Best heuristic by GPU allocation: {best.policy} at {100 * best.metrics.gpu_allocation:.2f}%. "
            "Target: an exact policy at least 1 point above it.",
            "",
        ]
        for r in results:
            if r.kind != "heuristic":
                delta = 100 * (r.metrics.gpu_allocation - best.metrics.gpu_allocation)
                lines.append(f"- {r.policy}: {100 * r.metrics.gpu_allocation:.2f}% ({delta:+.2f} points)")
        lines.append("")
        if args.repeat > 1:
            runs: dict[str, list[float]] = {}
            for r in results:
                if r.kind != "heuristic":
                    runs.setdefault(r.policy.rsplit(" #", 1)[0], []).append(100 * r.metrics.gpu_allocation)
            lines += [f"Medians over {args.repeat} runs of each exact policy:", ""]
            for name, values in runs.items():
                median = statistics.median(values)
                delta = median - 100 * best.metrics.gpu_allocation
                shown = ", ".join(f"{v:.2f}" for v in values)
                lines.append(f"- {name}: {shown}% -> median {median:.2f}% ({delta:+.2f} points)")
            lines.append("")
    exact = [r for r in results if r.kind != "heuristic"]
    if exact:
        lines += ["Solver cost of the exact policies (one row per run):", ""]
        lines += [
            "| policy | solver time (s) | simulated hours | solver s per simulated hour | re-solves | "
            "fallbacks | share of wall time |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in exact:
            m = r.metrics
            lines.append(
                f"| {r.policy} | {m.solver_time:.1f} | {(m.end - m.start) / 3600:,.1f} | "
                f"{m.solver_time_per_hour:.3f} | {r.counters.resolves} | {r.counters.fallbacks} | "
                f"{100 * m.solver_time_share:.0f}% |"
            )
        lines += [
            "",
            "Re-solves are the loop's triggered solves; the solver time also counts the admissions between them "
            "(by the fallback heuristic, or with `admit_exact` by the method).",
            "",
        ]
    img = Path(args.img).resolve()
    where = img.relative_to(REPO) if img.is_relative_to(REPO) else img
    plots = ", ".join(f"`{where}/{prefix}{kind}.png`" for kind in ("utilisation", "jct_cdf", "queue"))
    lines += [f"Plots: {plots}.", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
