"""Issue 18: partitioned solving (POP) against the whole problem, side by side, from 1k to 50k nodes.

Two tables, every run in one process per size (the problem built once, ``openb_like`` seed ``--seed``,
``--jobs-per-node`` jobs per node; 50k nodes x 400k jobs at the top):

- **at a budget**: ``solve(p, "auto", time_limit=T)`` on the whole problem in this process, against
  ``solve(p, "pop", parts=k, inner="auto", time_limit=T)`` for each k: wall time, GPU allocation, the
  difference to the whole answer in points, the bound and gap, and the time of each POP stage
  (bound, partition, sub-problems, parts, merge, repair, evaluation; the verification after the engine) and the pace;
- **time to an answer**: the heuristic ``--rule`` without a budget (``time_limit=None``) on the whole problem (up to
  ``--whole-rule-max`` nodes: it grows faster than linearly) against POP-k with the same rule inside.

The parts run in a local process pool (``executor="local"``; Ray gives the same on one machine, see
``tests/test_pop.py``), as many at once as this process has CPUs.

    python benchmarks/pop_scaling.py [--sizes 1000,5000,10000,20000,50000] [--parts 4,8,16]
        [--budget 30] [--budget-top 60] [--rule fgd-plus] [--out benchmarks/results/pop_scaling.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: POP's stages, in order (stats of the answer, seconds).
STAGES = ("bound_time", "partition_time", "build_time", "parts_time", "merge_time", "repair_time", "evaluate_time")


def _run(problem: Any, method: str, **options: Any) -> dict[str, Any]:
    import optalloc

    start = time.perf_counter()
    answer = optalloc.solve(problem, method, **options)
    wall = time.perf_counter() - start
    stats = answer.stats
    return {
        "wall": round(wall, 3),
        "gpu": answer.summary(problem).gpu_allocation_ratio,
        "objective": answer.objective,
        "bound": answer.bound,
        "gap": answer.gap,
        "status": answer.status.value,
        "stages": {k: stats.get(k) for k in STAGES},
        # The verification of the whole (and what solve() does after the engine): not in answer.wall_time.
        "verify": round(wall - answer.wall_time, 3),
        "pace": stats.get("pace"),
        "part_walls": stats.get("part_walls"),
        "repaired": stats.get("repaired"),
        "executor": stats.get("executor"),
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import optalloc
    from optalloc.io import synthetic

    optalloc.preload("auto")
    optalloc.preload("pop")
    rows: list[dict[str, Any]] = []
    sizes = [int(s) for s in args.sizes.split(",")]
    parts = [int(k) for k in args.parts.split(",")]
    for nodes in sizes:
        t0 = time.perf_counter()
        problem = synthetic.openb_like(nodes=nodes, jobs=args.jobs_per_node * nodes, seed=args.seed)
        built = time.perf_counter() - t0
        budget = args.budget_top if nodes == max(sizes) else args.budget
        base = {"nodes": nodes, "jobs": len(problem.jobs), "build": round(built, 1)}

        def record(
            table: str, method: str, k: int, row: dict[str, Any], base: dict[str, Any] = base, **extra: Any
        ) -> None:
            rows.append({**base, "table": table, "method": method, "parts": k, **extra, **row})
            print(json.dumps(rows[-1]), flush=True)

        record("budget", "whole auto", 1, _run(problem, "auto", time_limit=budget), budget=budget)
        for k in parts:
            row = _run(problem, "pop", parts=k, inner="auto", executor="local", time_limit=budget)
            record("budget", f"POP-{k} auto", k, row, budget=budget)
        if nodes <= args.whole_rule_max:
            record("rule", f"whole {args.rule}", 1, _run(problem, args.rule, time_limit=None))
        for k in parts:
            row = _run(problem, "pop", parts=k, inner=args.rule, executor="local", time_limit=None)
            record("rule", f"POP-{k} {args.rule}", k, row)
        del problem
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = [
        "# POP: partitioned solving against the whole problem (issue 18)",
        "",
        f"Command: `{command}`. Machine: {len(os.sched_getaffinity(0))} CPUs (shared, noisy); one run per "
        f"cell, side by side in one process per size; peak resident set {peak:,.0f} MiB. GPU allocation: "
        "% of the cluster's GPUs allocated; vs whole: points against the whole problem's answer at the "
        "same budget (or the same rule). The bound is the whole problem's (the pooled-capacity LP), "
        "for POP too.",
        "",
        "## At a budget (`auto` inside)",
        "",
        "| nodes | jobs | method | budget (s) | wall (s) | GPU alloc. | vs whole | gap | bound / partition / build / parts / merge / repair / evaluate / verify (s) | pace | repaired |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["table"] == "budget"):
        whole = next(w for w in rows if w["table"] == "budget" and w["nodes"] == r["nodes"] and w["parts"] == 1)
        stages = " / ".join(f"{v:.2f}" for v in r["stages"].values() if v is not None)
        stages = f"{stages} / {r['verify']:.2f}" if stages else f"verify {r['verify']:.2f}"
        gap = f"{100 * r['gap']:.2f}%" if r["gap"] is not None else "none"
        pace = f"{r['pace']:.2f}" if r.get("pace") is not None else "-"
        out.append(
            f"| {r['nodes']:,} | {r['jobs']:,} | {r['method']} | {r['budget']:g} | {r['wall']:.2f} | "
            f"{100 * r['gpu']:.2f}% | {100 * (r['gpu'] - whole['gpu']):+.2f} | {gap} | {stages} | {pace} | "
            f"{r['repaired'] if r['repaired'] is not None else '-'} |"
        )
    out += [
        "",
        "## Time to an answer (a heuristic rule, no budget)",
        "",
        "| nodes | jobs | method | wall (s) | speed-up | GPU alloc. | vs whole | bound / partition / build / parts / merge / repair / evaluate / verify (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["table"] == "rule"):
        whole = next((w for w in rows if w["table"] == "rule" and w["nodes"] == r["nodes"] and w["parts"] == 1), None)
        stages = " / ".join(f"{v:.2f}" for v in r["stages"].values() if v is not None)
        stages = f"{stages} / {r['verify']:.2f}" if stages else f"verify {r['verify']:.2f}"
        speed = f"{whole['wall'] / r['wall']:.1f}x" if whole else "(whole not run)"
        versus = f"{100 * (r['gpu'] - whole['gpu']):+.2f}" if whole else "-"
        out.append(
            f"| {r['nodes']:,} | {r['jobs']:,} | {r['method']} | {r['wall']:.2f} | {speed} | "
            f"{100 * r['gpu']:.2f}% | {versus} | {stages} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,5000,10000,20000,50000")
    ap.add_argument("--jobs-per-node", type=int, default=8)
    ap.add_argument("--parts", default="4,8,16")
    ap.add_argument("--budget", type=float, default=30.0)
    ap.add_argument("--budget-top", type=float, default=60.0, help="the budget at the largest size")
    ap.add_argument("--rule", default="fgd-plus")
    ap.add_argument("--whole-rule-max", type=int, default=20000, help="largest size the whole rule runs on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pop_scaling.md")
    args = ap.parse_args()
    rows = measure(args)
    command = "python benchmarks/pop_scaling.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args.out.write_text(report(rows, command.strip()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
