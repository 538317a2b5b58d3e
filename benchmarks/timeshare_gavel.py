"""Time-share policies on the Gavel msr trace: heterogeneity-aware vs agnostic, side by side in one run.

Run: ``python benchmarks/timeshare_gavel.py [--traces DIR] [--cluster v100=32,p100=32,k80=32]
[--round 360] [--tick 360] [--budget 5] [--policy NAME ...] [--baseline fcfs+best-fit ...]
[--restart-penalty 30] [--skip K]
[--jobs N] [--processes 2] [--title TEXT] [--out benchmarks/results/timeshare_gavel.md]``

Default policies: FCFS + best-fit (the reference of every simulator table) and the rolling-horizon
controller (the best packing policy of the simulator benchmark, 0.45x FCFS + best-fit there), then
each time-share policy heterogeneity-aware and agnostic, all in one run on the same scenario. Per policy: average / p50 / p99 JCT, makespan, the finish-time
fairness ``rho`` distribution, GPU allocation, restarts, solver time. ``rho_j = JCT_j / T_j``, where
``T_j`` is the job's runtime on an equal share of the cluster over its life: its time fraction
``min(1, C / S)`` (``C`` GPUs, ``S`` the GPUs the jobs in the system ask for, time-averaged over the
job's stay in this run), spread over the GPU types it can use in proportion to their GPUs (Themis's
definition with Gavel's isolated share). ``rho <= 1``: the job did at least as well as with 1/N of the
cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sim_common import REPO, command_line, default_traces, machine, run_all

from optalloc.sim import TIMESHARE, SimConfig, SimResult, gavel_scenario, parse_counts, policies

PAIRS = ("max-min-fairness", "finish-time-fairness", "max-sum-throughput", "min-makespan", "fifo", "srtf")


def rho(result: SimResult, scenario) -> np.ndarray:
    """Finish-time fairness ratio of every finished job (see the module docstring)."""
    jobs = result.jobs
    arrival, finish, gpus = jobs.arrival, jobs.finish, jobs.gpus
    done = np.isfinite(finish)
    # S(t): GPUs asked by the jobs in the system (arrived, not finished), piecewise constant.
    times = np.concatenate([arrival[done], finish[done]])
    delta = np.concatenate([gpus[done], -gpus[done]])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(delta[order])
    widths = np.diff(times, append=times[-1])
    integral = np.concatenate([[0.0], np.cumsum(level * widths)])[:-1]

    def area(t: np.ndarray) -> np.ndarray:
        k = np.searchsorted(times, t, side="right") - 1
        k = np.clip(k, 0, len(times) - 1)
        return integral[k] + level[k] * (t - times[k])

    a, f = arrival[done], finish[done]
    stay = np.maximum(f - a, 1e-9)
    asked = (area(f) - area(a)) / stay
    nodes = scenario.nodes
    models = sorted({n.gpu_model for n in nodes if n.gpus and n.gpu_model})
    cap = np.array([sum(n.gpus for n in nodes if n.gpu_model == m) for m in models], dtype=np.float64)
    columns = {m: k for k, m in enumerate(scenario.models)}
    runtime = np.stack([scenario.runtime[:, columns.get(m, columns.get("*", 0))] for m in models], axis=1)[done]
    rate = np.where(np.isfinite(runtime) & (runtime > 0), 1.0 / np.where(runtime > 0, runtime, 1.0), 0.0)
    allowed_cap = np.where(rate > 0, cap[None, :], 0.0)
    spread = allowed_cap / np.maximum(allowed_cap.sum(axis=1, keepdims=True), 1e-12)
    part = np.minimum(1.0, cap.sum() / np.maximum(asked, 1e-12))
    equal_rate = part * (spread * rate).sum(axis=1)
    ideal = 1.0 / np.maximum(equal_rate, 1e-300)
    return (f - a) / ideal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--cluster", default="v100=32,p100=32,k80=32")
    parser.add_argument("--round", type=float, default=360.0, help="seconds per time-share round")
    parser.add_argument("--tick", type=float, default=360.0)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per solve stage (time-share policies)")
    parser.add_argument("--policy", action="append", default=None, help="a time-share policy (both variants run)")
    parser.add_argument(
        "--baseline",
        action="append",
        default=None,
        help="other simulator policies (default fcfs+best-fit and rolling-horizon; the first is the reference)",
    )
    parser.add_argument("--restart-penalty", type=float, default=30.0, help="seconds without progress after a restart")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first K jobs by arrival")
    parser.add_argument("--jobs", type=int, default=None, help="replay only N jobs (after --skip)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--title", default="", help="a heading for this run's table")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "timeshare_gavel.md"))
    args = parser.parse_args(argv)
    folder = Path(args.traces) / "gavel"
    trace = folder / "msr" / "seed=0" / "0e4a51.trace"
    if not trace.exists():
        print(f"trace not found: {trace} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    scenario = gavel_scenario(trace, folder / "simulation_throughputs.json", parse_counts(args.cluster))
    if args.skip or args.jobs:
        scenario = scenario.select(args.skip, args.jobs)
    baselines = args.baseline or ["fcfs+best-fit", "rolling-horizon"]
    names = list(baselines)
    for name in args.policy or PAIRS:
        names += [name, name + "-agnostic"]
    durations = [j.duration or 0.0 for j in scenario.jobs]
    # the rolling-horizon baseline keeps the simulator benchmark's 1 s per re-solve; the time-share programs --budget
    chosen = [
        policies([n], budget=args.budget if n in TIMESHARE else 1.0, durations=durations, round_length=args.round)[0]
        for n in names
    ]
    config = SimConfig(tick=args.tick, seed=0, restart_penalty=args.restart_penalty)
    results = run_all(scenario, chosen, config, processes=args.processes)
    by = {r.policy: r for r in results}
    base = by.get(baselines[0])
    loop = by.get("rolling-horizon")
    d = scenario.describe()
    lines = [
        f"# {args.title or 'Time-share policies on the Gavel trace: heterogeneity-aware vs agnostic'}",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}.",
        "",
        f"Scenario: {d['description']}. {d['nodes']} servers, {d['gpus']} GPUs, {d['jobs']} jobs over "
        f"{d['span_s'] / 86400:.1f} days of arrivals; offered load {scenario.offered_load('v100'):.2f} at V100 "
        f"speed, {scenario.offered_load('k80'):.2f} at K80 speed"
        + (
            f"; {baselines[0]}: {base.metrics.avg_waiting:.1f} jobs wait on average for "
            f"{base.metrics.avg_running:.1f} running (waiting ratio {base.metrics.waiting_ratio:.2f})"
            if base
            else ""
        )
        + ".",
        "",
        f"Simulation: tick {args.tick:.0f} s, time-share rounds of {args.round:.0f} s (re-solved every round and at "
        f"every arrival and completion; every round's assignment verified), restart penalty {args.restart_penalty:.0f} s "
        f"on every change of GPUs, progress kept; solver time limit {args.budget:.0f} s per stage (rolling-horizon: 1 s per re-solve). "
        "rho: JCT over the runtime on an equal share of the cluster (module docstring).",
        "",
        "| policy | avg JCT (d) | vs "
        + baselines[0]
        + " | vs rolling-horizon | aware vs agnostic | p50 JCT (d) | p99 JCT (d) | makespan (d) "
        "| rho p50 | rho p90 | rho max | rho > 1 (%) | GPU alloc % | GPU util % | restarts | solver s | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r.metrics
        rr = rho(r, scenario)
        ratio = f"{m.avg_jct / base.metrics.avg_jct:.2f}x" if base else ""
        vs_loop = f"{m.avg_jct / loop.metrics.avg_jct:.2f}x" if loop else ""
        twin = None
        if r.kind == "timeshare" and not r.policy.endswith("-agnostic"):
            twin = by.get(r.policy + "-agnostic")
        vs = f"{twin.metrics.avg_jct / m.avg_jct:.2f}x better" if twin else ""
        c = r.counters
        restarts = int(r.jobs.preemptions.sum() + r.jobs.migrations.sum())
        lines.append(
            f"| {r.policy} | {m.avg_jct / 86400:.2f} | {ratio} | {vs_loop} | {vs} | {m.p50_jct / 86400:.2f} "
            f"| {m.p99_jct / 86400:.2f} | {m.makespan / 86400:.2f} | {np.median(rr):.2f} | {np.percentile(rr, 90):.2f} "
            f"| {rr.max():.2f} | {100 * np.mean(rr > 1):.0f} | {100 * m.gpu_allocation:.1f} | {100 * m.gpu_utilisation:.1f} "
            f"| {restarts} | {c.solve_time:.0f} | {c.wall_time:.0f} |"
        )
    lines += [
        "",
        "`aware vs agnostic`: the agnostic variant's average JCT over the aware one's (the same program on one pool "
        "of GPUs). `restarts`: preemptions + migrations the policy caused (each pays the restart penalty).",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
