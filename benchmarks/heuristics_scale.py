"""The heuristics at cluster scale: time and peak memory of every rule, and the online Placer's latency.

Run: ``python benchmarks/heuristics_scale.py [--problems 10k,openb] [--methods ...] [--repeat 3]
[--placer fgd,fgd-plus,best-fit] [--budgets 0.2,0.5,1,2,5] [--budget-problems 10k,20k]
[--out benchmarks/results/heuristics_scale.md]``

Problems: ``10k`` = ``optalloc.io.synthetic.openb_like(nodes=10000, jobs=70000, seed=1)``, ``20k`` =
``openb_like(nodes=20000, jobs=150000, seed=1)``, ``openb`` = the whole openb default list on its 1213
GPU nodes (``optalloc.io.openb.read_openb(..., gpu_nodes_only=True)``).

For each problem and method, ``--repeat`` runs, each in a fresh process (so that peak memory is the
method's own): the wall time of ``optalloc.solve(problem, method)`` (the heuristic, building the
allocation and ``verify``, as a caller sees it), its CPU time, ``verify`` alone, ``summary`` alone, and
the process's peak resident memory (``ru_maxrss``) after building the problem and after solving.
Medians are reported. ``solve`` runs without a time limit (``time_limit=None``), so that the whole
heuristic is timed (the default limit of 10 s would cut a slower one short); the table says how
many jobs were left undecided (0 for every row of a complete run).

Budgets: in one process per problem (after a first small solve, as a scheduler that calls every
cycle), ``solve(problem, rule, time_limit=T)`` for every budget T and rule of ``--budget-rules``,
``--repeat`` times; the table gives the largest wall time, whether it kept T + max(0.1 s, 5% of T),
and what the answer placed and left undecided (reason ``time limit``).

The online Placer: the problem's jobs placed one at a time in order, with departures: after each
placement, while more than ``--full`` of the GPUs are allocated, a random running job leaves
(seeded). Every ``place`` and ``release`` call is timed; the table gives p50 / p99 / max of the
decision time (``place``) and of ``release``.

Writes the markdown table to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optalloc.core import usable_cpus

REPO = Path(__file__).resolve().parents[1]
METHODS = (
    "first-fit",
    "best-fit",
    "worst-fit",
    "dot-product",
    "gpu-packing",
    "gpu-clustering",
    "random",
    "fgd",
    "fgd-plus",
)
PROBLEMS = {
    "10k": "openb_like(nodes=10000, jobs=70000, seed=1)",
    "20k": "openb_like(nodes=20000, jobs=150000, seed=1)",
    "openb": "openb default list, 1213 GPU nodes",
}


def build(name: str, traces: str):
    """The problem called ``name`` (see module doc)."""
    from optalloc.io import openb, synthetic

    if name == "10k":
        return synthetic.openb_like(nodes=10000, jobs=70000, seed=1)
    if name == "20k":
        return synthetic.openb_like(nodes=20000, jobs=150000, seed=1)
    if name == "openb":
        data = Path(traces) / "alibaba-gpu-v2023"
        return openb.read_openb(
            data / "openb_node_list_all_node.csv", data / "openb_pod_list_default.csv", gpu_nodes_only=True
        )
    raise SystemExit(f"unknown problem {name!r} (known: {', '.join(PROBLEMS)})")


def one_run(problem_name: str, method: str, traces: str) -> dict:
    """Child process: build the problem, solve it once, report times and memory as JSON."""
    import resource

    import optalloc

    problem = build(problem_name, traces)
    problem.capacity, problem.demand  # noqa: B018 - the problem's own views, built before the clock
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    answer = optalloc.solve(problem, method, time_limit=None)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    violations = optalloc.verify(problem, answer)
    verify_seconds = time.perf_counter() - start
    start = time.perf_counter()
    summary = answer.summary(problem)
    summary_seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "verify": verify_seconds,
        "summary": summary_seconds,
        "rss_before_mib": before / 1024,
        "rss_peak_mib": peak / 1024,
        "violations": len(violations),
        "gpu_allocation": summary.gpu_allocation_ratio * 100,
        "placed": summary.jobs_placed,
        "undecided": int(answer.stats.get("undecided", 0)),
    }


def budget_run(problem_name: str, rules: list[str], budgets: list[float], repeat: int, traces: str) -> list[dict]:
    """Child process: ``solve(problem, rule, time_limit=T)`` for every rule and budget (module doc)."""
    import optalloc
    from optalloc.anytime import verify_reserve
    from optalloc.io import synthetic

    problem = build(problem_name, traces)
    problem.capacity, problem.demand  # noqa: B018 - the problem's own views, built before the clock
    optalloc.solve(synthetic.openb_like(nodes=5, jobs=20, seed=1), "fgd-plus", time_limit=1.0)  # first-call imports
    reserve = verify_reserve(problem)
    rows = []
    for rule in rules:
        for budget in budgets:
            walls, answer = [], None
            for _ in range(repeat):
                start = time.perf_counter()
                answer = optalloc.solve(problem, rule, time_limit=budget)
                walls.append(time.perf_counter() - start)
            assert answer is not None
            start = time.perf_counter()
            optalloc.verify(problem, answer)
            rows.append(
                {
                    "rule": rule,
                    "budget": budget,
                    "wall": max(walls),
                    "kept": max(walls) <= budget + max(0.1, 0.05 * budget),
                    "placed": answer.stats.get("placed_jobs", 0),
                    "undecided": answer.stats.get("undecided", 0),
                    "verify": time.perf_counter() - start,
                    "reserve": reserve,
                }
            )
    return rows


def placer_run(problem_name: str, rule: str, traces: str, full: float, seed: int) -> dict:
    """Child process: the online Placer over the problem's jobs, with departures (module doc)."""
    import numpy as np

    from optalloc.heuristics import Placer

    problem = build(problem_name, traces)
    capacity = float(problem.capacity[:, 2].sum())
    placer = Placer(problem, rule, seed=seed)
    rng = np.random.default_rng(seed)
    live: list = []
    used = 0.0
    place_times, release_times = [], []
    for j in range(len(problem.jobs)):
        start = time.perf_counter()
        got = placer.place(j)
        place_times.append(time.perf_counter() - start)
        if got:
            live.append(got)
            used += sum(p.gpu_milli * len(p.gpus) for p in got)
        while live and used > full * capacity:
            gone = live.pop(int(rng.integers(len(live))))
            start = time.perf_counter()
            placer.release(gone)
            release_times.append(time.perf_counter() - start)
            used -= sum(p.gpu_milli * len(p.gpus) for p in gone)
    place = np.array(place_times) * 1e3
    release = np.array(release_times) * 1e3 if release_times else np.zeros(1)
    return {
        "decisions": len(place),
        "releases": len(release_times),
        "place_p50": float(np.percentile(place, 50)),
        "place_p99": float(np.percentile(place, 99)),
        "place_max": float(place.max()),
        "place_total": float(place.sum() / 1e3),
        "release_p50": float(np.percentile(release, 50)),
        "release_p99": float(np.percentile(release, 99)),
    }


def _child(args: list[str], baseline: str | None = None) -> dict:
    env = dict(os.environ)
    if baseline:  # another version's optalloc package comes first on the path
        env["PYTHONPATH"] = os.pathsep.join([baseline, *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def side_by_side(problems: list[str], methods: list[str], args) -> list[str]:
    """``--baseline``: each method run alternately with the baseline's optalloc and this one's."""
    med = statistics.median
    out = [
        f"## Side by side with `{args.baseline_name}`",
        "",
        f"The same `solve(problem, method, time_limit=None)` in fresh processes, alternating {args.repeat} times "
        f"between `{args.baseline_name}` and this version (so both see the same load); medians, wall / CPU "
        "seconds; *ratio*: this version's CPU over the baseline's.",
        "",
        "| problem | method | before s (wall / CPU) | after s (wall / CPU) | ratio (CPU) | same allocation % |",
        "|---|---|---:|---:|---:|:---:|",
    ]
    for problem in problems:
        for method in methods:
            before, after = [], []
            for _ in range(args.repeat):
                child = ["--traces", args.traces, "--child", "solve", problem, method]
                before.append(_child(child, args.baseline))
                after.append(_child(child))
            b_cpu, a_cpu = med(r["cpu_seconds"] for r in before), med(r["cpu_seconds"] for r in after)
            same = "yes" if before[0]["gpu_allocation"] == after[0]["gpu_allocation"] else "no"
            out.append(
                f"| {problem} | {method} | {med(r['seconds'] for r in before):.2f} / {b_cpu:.2f} | "
                f"{med(r['seconds'] for r in after):.2f} / {a_cpu:.2f} | {a_cpu / b_cpu:.2f} | {same} |"
            )
            print(out[-1], flush=True)
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_traces = os.environ.get("OPTALLOC_TRACES", str(REPO.parent / "shared" / "data" / "traces"))
    parser.add_argument("--traces", default=default_traces, help="folder of the public traces")
    parser.add_argument("--problems", default="10k,openb", help=f"comma-separated: {', '.join(PROBLEMS)}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--placer", default="best-fit,fgd,fgd-plus", help="rules for the online Placer ('' to skip)")
    parser.add_argument("--placer-problem", default="10k")
    parser.add_argument("--full", type=float, default=0.9, help="GPU allocation above which jobs depart")
    parser.add_argument("--budgets", default="0.2,0.5,1,2,5", help="time limits in seconds ('' to skip)")
    parser.add_argument("--budget-problems", default="10k,20k")
    parser.add_argument("--budget-rules", default="best-fit,fgd,fgd-plus")
    parser.add_argument(
        "--baseline",
        default="",
        help="instead: another version, run side by side with this one: a git revision of this repository, or "
        "a folder holding its optalloc package",
    )
    parser.add_argument("--baseline-name", default="baseline", help="what to call it in the table")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "heuristics_scale.md"))
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, problem, method = args.child
        if kind == "solve":
            print(json.dumps(one_run(problem, method, args.traces)))
        elif kind == "budget":
            budgets = [float(b) for b in args.budgets.split(",") if b]
            print(json.dumps(budget_run(problem, method.split(","), budgets, args.repeat, args.traces)))
        else:
            print(json.dumps(placer_run(problem, method, args.traces, args.full, seed=0)))
        return 0

    problems = [p for p in args.problems.split(",") if p]
    methods = [m for m in args.methods.split(",") if m]
    if args.baseline:
        command = "python benchmarks/heuristics_scale.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        if not Path(args.baseline).is_dir():  # a git revision of this repository: its optalloc package
            folder = tempfile.mkdtemp(prefix="optalloc-baseline-")
            archive = subprocess.run(
                ["git", "archive", args.baseline, "optalloc"], cwd=REPO, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
            args.baseline_name = args.baseline if args.baseline_name == "baseline" else args.baseline_name
            args.baseline = folder
        head = ["# Heuristics at scale, side by side", "", f"Command: `{command.strip()}`", ""]
        cpu = platform.processor() or platform.machine()
        tail = [f"Machine: {cpu}, {usable_cpus()} cores shared with other work while measuring.", ""]
        Path(args.out).write_text("\n".join(head + side_by_side(problems, methods, args) + tail))
        print(f"wrote {args.out}")
        return 0
    rows: dict[tuple[str, str], list[dict]] = {}
    for problem in problems:
        for method in methods:
            runs = [_child(["--traces", args.traces, "--child", "solve", problem, method]) for _ in range(args.repeat)]
            rows[problem, method] = runs
            med = statistics.median(r["seconds"] for r in runs)
            logline = f"{problem:6s} {method:15s} {med:7.2f} s  peak {max(r['rss_peak_mib'] for r in runs):7.0f} MiB"
            print(logline, flush=True)
    placer_rows = {}
    for rule in [r for r in args.placer.split(",") if r]:
        child = ["--traces", args.traces, "--full", str(args.full), "--child", "placer", args.placer_problem, rule]
        placer_rows[rule] = _child(child)
        print(f"placer {rule:12s} p99 {placer_rows[rule]['place_p99']:.3f} ms", flush=True)

    budget_rows: dict[str, list[dict]] = {}
    if args.budgets:
        for problem in [p for p in args.budget_problems.split(",") if p]:
            child = ["--traces", args.traces, "--repeat", str(args.repeat), "--budgets", args.budgets]
            budget_rows[problem] = _child([*child, "--child", "budget", problem, args.budget_rules])
            kept = all(r["kept"] for r in budget_rows[problem])
            print(f"budgets {problem}: {'all kept' if kept else 'NOT all kept'}", flush=True)

    command = "python benchmarks/heuristics_scale.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = report(problems, methods, rows, placer_rows, args, command.strip(), budget_rows)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


def report(problems, methods, rows, placer_rows, args, command: str, budget_rows=None) -> str:
    med = statistics.median
    out = [
        "# Heuristics at scale: time, memory, online latency",
        "",
        f"Command: `{command}`",
        "",
        f"Medians of {args.repeat} runs, each in a fresh process. *solve*: wall seconds of "
        "`optalloc.solve(problem, method)` (heuristic, allocation, objective and `verify`) / CPU seconds; "
        "*verify* and *summary*: each alone, wall; *peak*: the process's peak resident memory after "
        "solving (the problem alone: *base*). Problems: " + "; ".join(f"`{p}` = {PROBLEMS[p]}" for p in problems) + ".",
        "",
    ]
    for problem in problems:
        out += [
            f"## {problem}: {PROBLEMS[problem]}",
            "",
            "| method | solve s (wall / CPU) | verify s | summary s | peak MiB (base) | GPU allocated % | jobs placed | undecided |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method in methods:
            runs = rows[problem, method]
            out.append(
                f"| {method} | {med(r['seconds'] for r in runs):.2f} / {med(r['cpu_seconds'] for r in runs):.2f} | "
                f"{med(r['verify'] for r in runs):.3f} | {med(r['summary'] for r in runs):.3f} | "
                f"{max(r['rss_peak_mib'] for r in runs):.0f} ({med(r['rss_before_mib'] for r in runs):.0f}) | "
                f"{runs[0]['gpu_allocation']:.2f} | {runs[0]['placed']} | {max(r.get('undecided', 0) for r in runs)} |"
            )
        out.append("")
    if placer_rows:
        out += [
            f"## The online Placer on `{args.placer_problem}`",
            "",
            f"Every job placed in order; after each placement, random running jobs leave while more than "
            f"{args.full:.0%} of the GPUs are allocated. Milliseconds per call.",
            "",
            "| rule | decisions | releases | place p50 | place p99 | place max | release p50 | release p99 | all places, s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rule, r in placer_rows.items():
            out.append(
                f"| {rule} | {r['decisions']} | {r['releases']} | {r['place_p50']:.3f} | {r['place_p99']:.3f} | "
                f"{r['place_max']:.1f} | {r['release_p50']:.3f} | {r['release_p99']:.3f} | {r['place_total']:.2f} |"
            )
        out.append("")
    for problem, brows in (budget_rows or {}).items():
        out += [
            f"## Budgets on `{problem}`: {PROBLEMS[problem]}",
            "",
            f"`solve(problem, rule, time_limit=T)`, {args.repeat} runs each in one warm process; *wall*: the "
            "largest; *kept*: wall <= T + max(0.1 s, 5% of T); *placed* / *undecided*: jobs of the last "
            "answer (undecided: reason `time limit`); *verify*: `verify` of that answer alone; `solve` keeps "
            f"back {brows[0]['reserve']:.3f} s for verifying (`optalloc.anytime.verify_reserve`).",
            "",
            "| rule | T s | wall s | kept | placed | undecided | verify s |",
            "|---|---:|---:|:---:|---:|---:|---:|",
        ]
        for r in brows:
            out.append(
                f"| {r['rule']} | {r['budget']:g} | {r['wall']:.3f} | {'yes' if r['kept'] else 'NO'} | "
                f"{r['placed']} | {r['undecided']} | {r['verify']:.3f} |"
            )
        out.append("")
    cpu = platform.processor() or platform.machine()
    out += [
        f"Machine: {cpu}, {usable_cpus()} cores shared with other work while measuring (wall times include "
        f"waiting for a core; CPU times do not), Python {platform.python_version()}.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
