"""Issue 4 figure: scaling of the compressed program against straightforward models.

Synthetic openb-like problems (1k jobs on 100 nodes, 10k on 1k, 50k on 5k, offered load 1.3x the GPU
capacity); optalloc `cpsat` (compressed program, stop at 1% gap) against a naive CP-SAT model and a naive
PuLP/CBC model (one binary per job x node, see benchmarks/baselines.py), side by side in one run.
Reports time to first solution, time to <= 1% gap to the LP bound of the compressed program, and the
final gap. Writes benchmarks/results/exact_scaling.md.

    python benchmarks/exact_scaling.py [--sizes 1000x100,10000x1000,50000x5000] [--naive-limit 120]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from baselines import naive_cpsat, naive_pulp

from optalloc import solve
from optalloc.io import synthetic
from optalloc.models.lp_bound import lp_bound

HERE = Path(__file__).resolve().parent
NAIVE_MAX_VARIABLES = 3_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000x100,10000x1000,50000x5000")
    ap.add_argument("--limit", type=float, default=60.0, help="time limit of optalloc's cpsat (s)")
    ap.add_argument("--naive-limit", type=float, default=120.0, help="time limit of each naive model (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "exact_scaling.md")
    args = ap.parse_args()
    lines = [
        "# Scaling: compressed program vs naive models (issue 4)",
        "",
        f"Command: `python benchmarks/exact_scaling.py --sizes {args.sizes} --limit {args.limit:g} "
        f"--naive-limit {args.naive_limit:g}`. Synthetic openb-like workloads (`optalloc.io.synthetic.openb_like`, "
        f"load 1.3, seed {args.seed}); gap = (LP bound of the compressed program - objective) / LP bound; "
        "2 workers on a shared 2-core machine.",
        "",
        "| jobs x nodes | model | variables | build (s) | first solution (s) | to <= 1% gap (s) | wall (s) | final gap | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in args.sizes.split(","):
        jobs, nodes = (int(v) for v in size.split("x"))
        problem = synthetic.openb_like(nodes=nodes, jobs=jobs, seed=args.seed)
        bound = lp_bound(problem)
        start = time.perf_counter()
        ours = solve(problem, "cpsat", time_limit=args.limit, relative_gap=0.01, seed=args.seed)
        wall = time.perf_counter() - start
        gap = (bound - ours.objective) / bound
        first = ours.stats.get("first_solution_time")
        prep = ours.stats.get("prepare_time", 0.0)
        lines.append(
            f"| {size} | optalloc cpsat (compressed) | {ours.stats.get('variables', 0):,} | {prep:.2f} | "
            f"{_s(first)} | {_s(wall) if gap <= 0.01 else 'not reached'} | {wall:.2f} | {100 * gap:.2f}% | {ours.status.value} |"
        )
        print(lines[-1], flush=True)
        pairs = int(sum(problem.fits_empty(j).sum() for j in range(len(problem.jobs))))
        for runner in (naive_cpsat, naive_pulp):
            if pairs > NAIVE_MAX_VARIABLES:
                lines.append(
                    f"| {size} | {runner.__name__.replace('_', ' ')} | > {pairs:,} | - | - | - | - | - | not built: {pairs:,} job x node binaries alone |"
                )
                print(lines[-1], flush=True)
                continue
            run = runner(problem, args.naive_limit)
            ngap = None if run.objective is None else (bound - run.objective) / bound
            reached = run.build_time + run.solve_time if ngap is not None and ngap <= 0.01 else None
            lines.append(
                f"| {size} | {run.model} | {run.variables:,} | {run.build_time:.2f} | "
                f"{_s(None if run.first_solution_time is None else run.build_time + run.first_solution_time)} | "
                f"{_s(reached) if reached else 'not reached'} | {run.build_time + run.solve_time:.2f} | "
                f"{'-' if ngap is None else f'{100 * ngap:.2f}%'} | {run.status} |"
            )
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
