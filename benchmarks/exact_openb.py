"""Issue 4 figure: the whole openb default list (8152 pods) and multigpu50 on the 1213 GPU nodes.

For each list: the LP bound of the compressed program; the best heuristics; `auto` (best-fit warm start,
then CP-SAT) at several time limits (the smallest that reaches <= 0.5% gap to the LP bound is the
time to the gap), repeated --repeats times (medians). Writes benchmarks/results/exact_openb.md.

    python benchmarks/exact_openb.py [--traces ../shared/data/traces] [--repeats 3] [--limits 2,5,10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from optalloc import solve
from optalloc.io import openb
from optalloc.models.lp_bound import lp_bound

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=Path, default=HERE.parent.parent / "shared" / "data" / "traces")
    ap.add_argument("--lists", default="default,multigpu50")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limits", default="2,5,10")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "exact_openb.md")
    args = ap.parse_args()
    t = args.traces / "alibaba-gpu-v2023"
    limits = [float(x) for x in args.limits.split(",")]
    lines = [
        "# Exact allocation of the whole openb lists (issue 4)",
        "",
        f"Command: `python benchmarks/exact_openb.py --repeats {args.repeats} --limits {args.limits}`. "
        "1213 GPU nodes (6212 GPUs); objective = allocated milli-GPU (+10 per CPU-only pod, - small "
        "secondary terms); gap = (LP bound - objective) / LP bound; medians over the repeats; 2 cores.",
        "",
        "| list | method | time limit (s) | wall (s) | objective | gap to LP bound | GPU allocation | unplaced pods | first solution (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.lists.split(","):
        problem = openb.read_openb(
            t / "openb_node_list_all_node.csv", t / f"openb_pod_list_{name}.csv", gpu_nodes_only=True
        )
        start = time.perf_counter()
        bound = lp_bound(problem)
        lp_time = time.perf_counter() - start
        print(f"{name}: LP bound {bound:,.0f} in {lp_time:.2f}s", flush=True)
        runs: list[tuple[str, float | None, list]] = [
            (
                "best-fit (largest-demand-first)",
                None,
                [solve(problem, "best-fit", order="largest-demand-first") for _ in range(args.repeats)],
            ),
            ("fgd (fcfs)", None, [solve(problem, "fgd") for _ in range(args.repeats)]),
        ]
        for limit in limits:
            runs.append(
                ("auto", limit, [solve(problem, "auto", time_limit=limit, seed=r) for r in range(args.repeats)])
            )
        for method, limit, answers in runs:
            row = _row(name, method, limit, answers, problem, bound)
            print(row, flush=True)
            lines.append(row)
        lines.append(f"| {name} | LP bound | - | {lp_time:.2f} | {bound:,.0f} | 0 | - | - | - |")
    lines += ["", "First solution: for `auto`, the warm-start heuristic's answer (CP-SAT then improves it)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _row(name, method, limit, answers, problem, bound) -> str:  # type: ignore[no-untyped-def]
    def med(f):  # type: ignore[no-untyped-def]
        return statistics.median(f(a) for a in answers)

    objective = med(lambda a: a.objective)
    warm = [a.stats["heuristic_time"] for a in answers if "heuristic_time" in a.stats]
    first = statistics.median(warm) if warm else med(lambda a: a.wall_time)
    return (
        f"| {name} | {method} | {'-' if limit is None else f'{limit:g}'} | {med(lambda a: a.wall_time):.2f} | "
        f"{objective:,.0f} | {100 * (bound - objective) / bound:.2f}% | "
        f"{100 * med(lambda a: a.summary(problem).gpu_allocation_ratio):.2f}% | {med(lambda a: len(a.unplaced)):.0f} | "
        f"{first:.2f} |"
    )


if __name__ == "__main__":
    main()
