"""Sweep benchmark: the Gavel evaluation (policies x seeds on the msr trace) serially, in a local process pool
and as Ray tasks, side by side: the same outcomes, and the wall time of each.

Run: ``python benchmarks/sim_sweep_ray.py [--traces DIR] [--cluster v100=32,p100=32,k80=32] [--jobs 200]
[--policy heuristics] [--seeds 0] [--heldout-seeds 1] [--heldout-cluster v100=16,p100=24,k80=40]
[--tick 300] [--workers 2] [--repeat 3] [--executors serial,local,ray] [--out benchmarks/results/sim_sweep_ray.md]``

Every run drives the production controller step (engine ``controller``). The executors run in turn, the
order rotated at each repeat (so that each sees the machine's load alike); the table gives the median
wall time of a whole sweep per executor. Ray is a local runtime with ``--workers`` CPUs, started once
before the first sweep (its start is timed apart); the local pool has ``--workers`` forked processes.
Every sweep's outcomes (``SimResult.outcome()``: every simulated figure, the per-job table and the
timeline) are compared with the first serial sweep's, on the tuned sweep and on a held-out one (other
usage seeds, another cluster mix).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from sim_common import REPO, command_line, default_traces, machine

from optalloc.sim import Run, SimConfig, gavel_scenario, grid, parse_counts, policies, start_ray, sweep


def _sweeps(args: argparse.Namespace, counts: str, seeds: list[int]) -> list[Run]:
    folder = Path(args.traces) / "gavel"
    scenario = gavel_scenario(folder / "msr" / "seed=0" / "0e4a51.trace", folder / "simulation_throughputs.json",
                              parse_counts(counts))  # fmt: skip
    if args.jobs:
        scenario = scenario.head(args.jobs)
    chosen = policies(args.policy or ["heuristics"], budget=args.budget)
    base = SimConfig(tick=args.tick)
    return grid([scenario], chosen, [replace(base, seed=s) for s in seeds])


def _timed(runs: list[Run], executor: str, workers: int) -> tuple[float, list[dict]]:  # type: ignore[type-arg]
    start = time.perf_counter()
    results = sweep(runs, executor=executor, processes=workers if executor == "local" else None)
    wall = time.perf_counter() - start
    assert all(r is not None for r in results)
    return wall, [r.outcome() for r in results if r is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--cluster", default="v100=32,p100=32,k80=32")
    parser.add_argument("--jobs", type=int, default=200, help="the first N jobs of the trace (0: all 1181)")
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--seeds", default="0", help="usage seeds of the tuned sweep, comma-separated")
    parser.add_argument("--heldout-seeds", default="1", help="usage seeds of the held-out sweep ('' for none)")
    parser.add_argument("--heldout-cluster", default="v100=16,p100=24,k80=40")
    parser.add_argument("--tick", type=float, default=300.0)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per re-solve of exact policies")
    parser.add_argument("--workers", type=int, default=2, help="local pool processes and Ray CPUs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executors", default="serial,local,ray")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sim_sweep_ray.md"))
    args = parser.parse_args(argv)
    if not (Path(args.traces) / "gavel" / "msr").is_dir():
        print(f"traces not found under {args.traces} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    executors = [e for e in args.executors.split(",") if e]
    tuned = _sweeps(args, args.cluster, [int(s) for s in args.seeds.split(",") if s])
    heldout_seeds = [int(s) for s in args.heldout_seeds.split(",") if s]
    heldout = _sweeps(args, args.heldout_cluster, heldout_seeds) if heldout_seeds else []

    ray_start = None
    if "ray" in executors:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        where = start_ray()  # already running: says where
        ray_start = time.perf_counter() - started
        print(f"{where}: started in {ray_start:.1f} s", file=sys.stderr, flush=True)

    walls: dict[str, list[float]] = {e: [] for e in executors}
    reference: list[dict] | None = None  # type: ignore[type-arg]
    same: dict[str, bool] = {e: True for e in executors}
    for k in range(args.repeat):
        for executor in executors[k % len(executors) :] + executors[: k % len(executors)]:
            wall, outcomes = _timed(tuned, executor, args.workers)
            walls[executor].append(wall)
            if reference is None:
                reference = outcomes
            same[executor] &= outcomes == reference
            print(f"repeat {k + 1}: {executor} {wall:.1f} s", file=sys.stderr, flush=True)
    held_same: dict[str, bool] = {}
    held_walls: dict[str, float] = {}
    if heldout:
        held_reference = None
        for executor in executors:
            wall, outcomes = _timed(heldout, executor, args.workers)
            held_walls[executor] = wall
            held_reference = outcomes if held_reference is None else held_reference
            held_same[executor] = outcomes == held_reference
            print(f"held-out: {executor} {wall:.1f} s", file=sys.stderr, flush=True)

    policy_names = sorted({r.policy.name for r in tuned}, key=[r.policy.name for r in tuned].index)
    scenario = tuned[0].scenario
    serial = statistics.median(walls["serial"]) if walls.get("serial") else None
    lines = [
        "# Sweeps: the Gavel evaluation serially, in a local pool and on Ray",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}.",
        "",
        f"Sweep: {len(tuned)} runs = {len(policy_names)} policies ({', '.join(policy_names)}) x usage seeds "
        f"{args.seeds} on {scenario.description} ({len(scenario.jobs)} jobs, {args.cluster}); tick {args.tick:g} s, "
        "every decision by the production controller step. The local pool and Ray have "
        f"{args.workers} workers each; Ray is a local runtime (`ray.init(num_cpus={args.workers})`)"
        + (f", started once in {ray_start:.1f} s before the sweeps (not in the times below)" if ray_start else "")
        + f". Medians of {args.repeat} sweeps per executor, the executors' order rotated at each repeat.",
        "",
        "| executor | median wall (s) | each sweep (s) | speed-up over serial | same outcomes as serial |",
        "|---|---:|---:|---:|---|",
    ]
    for executor in executors:
        median = statistics.median(walls[executor])
        each = ", ".join(f"{w:.1f}" for w in walls[executor])
        ratio = f"{serial / median:.2f}x" if serial else "-"
        lines.append(f"| {executor} | {median:.1f} | {each} | {ratio} | {'yes' if same[executor] else 'NO'} |")
    lines.append("")
    if heldout:
        h = heldout[0].scenario
        lines += [
            f"Held-out sweep (not tuned on): {len(heldout)} runs, usage seeds {args.heldout_seeds} on "
            f"{args.heldout_cluster} ({h.description}); one sweep per executor: "
            + "; ".join(
                f"{e} {held_walls[e]:.1f} s, {'same outcomes' if held_same[e] else 'DIFFERENT outcomes'}"
                for e in executors
            )
            + ".",
            "",
        ]
    lines += [
        "Outcomes compared: `SimResult.outcome()` of every run (every simulated metric and counter, and digests "
        "of the per-job table and the timeline; wall-clock figures left out). Heuristic policies decide the "
        "same wherever they run; policies with a time budget per re-solve (CP-SAT, the rolling horizon) decide "
        "within wall-clock seconds and may differ between any two runs on a loaded machine.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(same.values()) and all(held_same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
