"""Issue 14: budgets kept, bounds at every budget, never worse than the best heuristic, at 10k-node scale.

A table of budget x problem x method on this machine, medians over ``--repeats`` runs, with each
method's peak memory:

- problems: the openb default and multigpu50 lists (whole, on the 1213 GPU nodes), and
  ``openb_like(nodes=10000, jobs=70000)`` and ``openb_like(nodes=20000, jobs=150000)`` (seed 1);
- budgets (``time_limit``): 0.2, 0.5, 1, 2, 5, 10, 30 s;
- methods: ``auto``, ``cpsat``, ``milp-highs`` and every heuristic rule; ``auto`` and ``cpsat`` also
  with ``deterministic=True`` (``auto/det``, ``cpsat/det``).

Each (problem, method) runs in a fresh worker process: the problem is built, one small solve imports
the engines, then every budget is solved ``--repeats`` times. Per run: the wall time of ``solve``
(everything: heuristics, LP, CP-SAT, decoding, repair, verification), whether it kept the contract
``wall <= T + max(0.1 s, 5% of T)``, the objective, the bound and gap, the GPU allocation, the jobs left
undecided (reason ``time limit``) and whether any thread of the solve was still alive after it
returned. Peak memory is the worker's maximum resident set (the problem included).

    python benchmarks/anytime.py [--traces ../shared/data/traces] [--problems default,multigpu50,10k,20k]
        [--budgets 0.2,0.5,1,2,5,10,30] [--methods auto,cpsat,...] [--repeats 3] [--processes 1]
        [--out benchmarks/results/anytime.md]

Writes the markdown tables to ``--out`` and every run as JSON lines next to it (``.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from optalloc.core import usable_cpus

HERE = Path(__file__).resolve().parent
PROBLEMS = ("default", "multigpu50", "10k", "20k")
BUDGETS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
EXACT = ("auto", "cpsat", "milp-highs", "auto/det", "cpsat/det")


def build_problem(name: str, traces: Path):  # type: ignore[no-untyped-def]
    from optalloc.io import openb, synthetic

    if name == "10k":
        return synthetic.openb_like(nodes=10000, jobs=70000, seed=1)
    if name == "20k":
        return synthetic.openb_like(nodes=20000, jobs=150000, seed=1)
    folder = traces / "alibaba-gpu-v2023"
    return openb.read_openb(
        folder / "openb_node_list_all_node.csv", folder / f"openb_pod_list_{name}.csv", gpu_nodes_only=True
    )


def run_method(args: tuple[str, str, list[float], int, str]) -> list[dict[str, Any]]:
    """One worker: every budget x repeat of one method on one problem."""
    problem_name, method, budgets, repeats, traces = args
    import optalloc
    from optalloc.core import Reason
    from optalloc.io import synthetic

    problem = build_problem(problem_name, Path(traces))
    optalloc.solve(synthetic.openb_like(nodes=30, jobs=100, seed=1), "auto", time_limit=1)  # imports
    name, _, flag = method.partition("/")
    rows = []
    for budget in budgets:
        for repeat in range(repeats):
            before = threading.active_count()
            start = time.perf_counter()
            answer = optalloc.solve(problem, name, time_limit=budget, seed=repeat, deterministic=flag == "det")
            wall = time.perf_counter() - start
            lingering = threading.active_count() - before
            summary = answer.summary(problem)
            rows.append(
                {
                    "problem": problem_name,
                    "method": method,
                    "budget": budget,
                    "repeat": repeat,
                    "wall": round(wall, 4),
                    "kept": wall <= budget + max(0.1, 0.05 * budget),
                    "status": answer.status.value,
                    "objective": answer.objective,
                    "bound": answer.bound,
                    "gap": answer.gap,
                    "gpu": summary.gpu_allocation_ratio,
                    "undecided": sum(1 for u in answer.unplaced if u.reason == Reason.TIME_LIMIT),
                    "engine": answer.method,
                    "lingering_threads": lingering,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    for row in rows:
        row["peak_mib"] = round(peak)
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    from optalloc.solve import methods

    heuristics = {m.name for m in methods("heuristic")}
    out = [
        "# Anytime engine: budgets, bounds and the best heuristic (issue 14)",
        "",
        f"Command: `{command}`. Machine: {usable_cpus()} CPUs (shared, noisy). Medians over "
        f"{args.repeats} runs (seeds 0..{args.repeats - 1}); wall = the whole `solve()` call, verification "
        "included, the engines imported beforehand (a process's first call also pays about 1.5 s of imports: "
        "OR-Tools, SciPy, HiGHS). *kept*: runs with wall <= T + max(0.1 s, 5% T), over all runs. "
        "*best heuristic*: the heuristic rule with the highest median objective among those that decided "
        "every job and returned within the same budget (every run). gap = (bound - objective) / bound.",
        "",
    ]
    for problem in dict.fromkeys(r["problem"] for r in rows):
        mine = [r for r in rows if r["problem"] == problem]
        out += [f"## {problem}", ""]
        out += [
            "| budget (s) | method | wall p50 (s) | wall max (s) | kept | status | objective | gap | GPU alloc. | undecided | peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        summary: list[str] = []
        for budget in dict.fromkeys(r["budget"] for r in mine):
            at = [r for r in mine if r["budget"] == budget]
            best_h = None
            for method in dict.fromkeys(r["method"] for r in at):
                runs = [r for r in at if r["method"] == method]
                objective = _median([r["objective"] or 0.0 for r in runs])
                gaps = [r["gap"] for r in runs if r["gap"] is not None]
                statuses = sorted({r["status"] for r in runs})
                undecided = int(_median([r["undecided"] for r in runs]))
                finished = all(r["undecided"] == 0 and r["kept"] for r in runs)
                if method in heuristics and finished and (best_h is None or objective > best_h[1]):
                    best_h = (method, objective)
                out.append(
                    f"| {budget:g} | {method} | {_median([r['wall'] for r in runs]):.2f} | "
                    f"{max(r['wall'] for r in runs):.2f} | {sum(r['kept'] for r in runs)}/{len(runs)} | "
                    f"{'/'.join(statuses)} | {objective:,.0f} | "
                    f"{(f'{100 * _median(gaps):.2f}%' if len(gaps) == len(runs) else 'none')} | "
                    f"{100 * _median([r['gpu'] for r in runs]):.2f}% | {undecided} | {runs[0].get('peak_mib', '')} |"
                )
            autos = [r for r in at if r["method"] == "auto"]
            if autos and best_h is not None:
                auto = _median([r["objective"] or 0.0 for r in autos])
                verdict = ">=" if auto >= best_h[1] else "<"
                summary.append(
                    f"| {budget:g} | {auto:,.0f} | {verdict} | {best_h[0]} {best_h[1]:,.0f} | "
                    f"{100 * (auto - best_h[1]) / max(best_h[1], 1):+.3f}% |"
                )
        if summary:
            out += [
                "",
                f"`auto` against the best heuristic that finished within the same budget ({problem}):",
                "",
                "| budget (s) | auto (median) | | best heuristic (median) | auto vs best |",
                "|---|---|---|---|---|",
                *summary,
            ]
        out.append("")
    kept = sum(r["kept"] for r in rows)
    lingering = sum(1 for r in rows if r["lingering_threads"] > 0)
    out += [
        f"Budgets kept in {kept} of {len(rows)} runs; runs that left a thread running after `solve` "
        f"returned: {lingering}.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    from optalloc.solve import methods

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=HERE.parent.parent / "shared" / "data" / "traces")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS))
    ap.add_argument(
        "--methods", default="", help="default: auto, cpsat, milp-highs, the /det variants, every heuristic"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "anytime.md")
    ap.add_argument(
        "--fold",
        nargs="*",
        type=Path,
        default=None,
        help="only rebuild --out from these .jsonl files of earlier runs (one table from runs made in parts)",
    )
    args = ap.parse_args()
    if args.fold is not None:
        rows = [json.loads(line) for path in args.fold for line in path.read_text().splitlines() if line.strip()]
        problems = list(dict.fromkeys(r["problem"] for r in rows))
        rows.sort(key=lambda r: (problems.index(r["problem"]), r["budget"], r["method"], r["repeat"]))
        args.repeats = max(r["repeat"] for r in rows) + 1
        commands = sorted(
            {path.with_suffix(".cmd").read_text().strip() for path in args.fold if path.with_suffix(".cmd").exists()}
        )
        args.out.write_text(report(rows, args, "`; `".join(commands) or "python benchmarks/anytime.py --fold ..."))
        print(f"wrote {args.out}")
        return
    chosen = args.methods.split(",") if args.methods else [*EXACT, *(m.name for m in methods("heuristic"))]
    budgets = [float(b) for b in args.budgets.split(",")]
    jobs = [(p, m, budgets, args.repeats, str(args.traces)) for p in args.problems.split(",") for m in chosen]
    # Exact methods first (the longest), so that the pool ends together.
    jobs.sort(key=lambda j: j[1] not in EXACT)
    rows: list[dict[str, Any]] = []
    if args.processes > 1:
        with mp.get_context("fork").Pool(args.processes, maxtasksperchild=1) as pool:
            for part in pool.imap_unordered(run_method, jobs):
                rows.extend(part)
    else:
        for job in jobs:
            with mp.get_context("fork").Pool(1) as pool:  # a fresh process per method: its own peak memory
                rows.extend(pool.apply(run_method, (job,)))
    order = {m: i for i, m in enumerate(chosen)}
    rows.sort(
        key=lambda r: (args.problems.split(",").index(r["problem"]), r["budget"], order[r["method"]], r["repeat"])
    )
    command = "python benchmarks/anytime.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args.out.with_suffix(".cmd").write_text(command.strip() + "\n")
    args.out.write_text(report(rows, args, command.strip()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
