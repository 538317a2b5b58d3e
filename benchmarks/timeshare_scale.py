"""Time-share policies at scale: solve time per round at 2,048 jobs on 1,536 GPUs of three types, whole
programs and partitioned (POP).

Run: ``python benchmarks/timeshare_scale.py [--traces DIR] [--jobs 2048] [--gpus 512,512,512]
[--policy NAME ...] [--repeats 3] [--pop max-min-fairness ...] [--parts 4,8,16] [--executor local,serial]
[--seed 0] [--out benchmarks/results/timeshare_scale.md]``

The jobs are synthetic from the Gavel job mix: job types drawn uniformly from the 26 types of
``simulation_throughputs.json`` (as Gavel's trace generator does), GPU counts from the Philly mix of the
``0e4a51`` trace (1 x 436, 2 x 226, 4 x 451, 8 x 68), throughputs on V100 / P100 / K80 from the profile
(the 1-GPU rate where a pair has none), work = the throughput on V100 times a lognormal duration
(median 1 day), a random part of it done, priority weights 1 (90%) or 2. Per policy: the first solve
(which builds the DPP programs), then ``--repeats`` re-solves with every remaining work and elapsed time
moved by up to 1% and the throughputs by up to 1% (as between two rounds: so the answer is not reused),
median reported.

POP (``--pop``, :mod:`optalloc.timeshare.partitioned`): the same policy solved in ``k`` parts for each
``k`` of ``--parts``, on each executor of ``--executor`` (``local``: a pool of worker processes kept
between solves, one per CPU; ``serial``: one after the other here), on the same problems as the whole
program (the first and each re-solve): time of the first solve (it starts the workers and builds
their programs), median re-solve time, and the loss of the policy's objective measured on the whole
problem against the whole program's optimum (median and worst over the solves).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from sim_common import REPO, command_line, default_traces, machine

from optalloc.io.gavel import read_throughputs
from optalloc.timeshare import ShareProblem, Shares, get_policy

MODELS = ("v100", "p100", "k80")
PHILLY_GPUS = ((1, 436), (2, 226), (4, 451), (8, 68))
DEFAULT_POLICIES = (
    "max-min-fairness",
    "max-min-fairness-agnostic",
    "finish-time-fairness",
    "max-sum-throughput",
    "min-makespan",
    "fifo",
    "srtf",
)


def synthetic(throughputs_path: Path, jobs: int, gpus: tuple[int, ...], seed: int = 0) -> ShareProblem:
    rng = np.random.default_rng(seed)
    profile = read_throughputs(throughputs_path)
    raw = json.loads(throughputs_path.read_text())
    types = sorted({key.split("'")[1] for key in raw["v100"]})
    sizes = np.array([s for s, _ in PHILLY_GPUS])
    p = np.array([c for _, c in PHILLY_GPUS], dtype=np.float64)
    scale = rng.choice(sizes, size=jobs, p=p / p.sum())
    kind = rng.choice(len(types), size=jobs)
    rates = np.array(
        [
            [profile.rate(types[k], int(s), m) for m in MODELS]
            for k, s in zip(kind.tolist(), scale.tolist(), strict=True)
        ]
    )
    duration = rng.lognormal(np.log(86400.0), 1.0, size=jobs)
    work = rates[:, 0] * duration
    remaining = work * rng.uniform(0.05, 1.0, size=jobs)
    elapsed = rng.uniform(0.0, 3 * 86400.0, size=jobs)
    weight = np.where(rng.random(jobs) < 0.9, 1.0, 2.0)
    return ShareProblem.of(
        [f"j{i:05d}" for i in range(jobs)],
        MODELS,
        rates,
        [float(g) for g in gpus],
        scale=scale,
        weight=weight,
        remaining=remaining,
        work=work,
        elapsed=elapsed,
        arrival=-elapsed,
    )


def jitter(problem: ShareProblem, rng: np.random.Generator) -> ShareProblem:
    n = problem.n
    return ShareProblem.of(
        problem.jobs,
        problem.models,
        problem.throughput * rng.uniform(0.99, 1.01, size=problem.throughput.shape),
        problem.capacity,
        scale=problem.scale,
        weight=problem.weight,
        remaining=np.minimum(problem.work, problem.remaining * rng.uniform(0.99, 1.0, size=n)),
        work=problem.work,
        elapsed=problem.elapsed + rng.uniform(0, 360.0, size=n),
        arrival=problem.arrival,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--jobs", type=int, default=2048)
    parser.add_argument("--gpus", default="512,512,512")
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pop", action="append", default=None, help="policies solved partitioned too")
    parser.add_argument("--parts", default="4,8,16")
    parser.add_argument("--executor", default="local,serial")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic jobs")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "timeshare_scale.md"))
    args = parser.parse_args(argv)
    path = Path(args.traces) / "gavel" / "simulation_throughputs.json"
    if not path.exists():
        print(f"throughput profile not found: {path} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    gpus = tuple(int(g) for g in args.gpus.split(","))
    problem = synthetic(path, args.jobs, gpus, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    problems = [problem] + [jitter(problem, rng) for _ in range(args.repeats)]
    pop_names = args.pop if args.pop is not None else ["max-min-fairness"]
    names = list(args.policy or DEFAULT_POLICIES)
    names += [n for n in pop_names if n not in names]
    rows = []
    optima: dict[str, list[Shares]] = {}
    for name in names:
        policy = get_policy(name)
        answers = [policy.solve(q) for q in problems]
        optima[name] = answers
        first, again = answers[0], [a.solve_time for a in answers[1:]]
        used = float((problem.scale @ first.X).sum()) if first.X is not None else float("nan")
        rows.append((name, first, statistics.median(again) if again else float("nan"), answers[-1].status.value, used))
        print(f"{name}: first {first.solve_time:.2f} s, re-solve {rows[-1][2]:.2f} s", flush=True)
    pop_rows = []
    for name in pop_names:
        value = type(get_policy(name)).value
        sign = type(get_policy(name)).balance or 1
        for k in (int(x) for x in args.parts.split(",") if x):
            for executor in (e for e in args.executor.split(",") if e):
                with get_policy(name, parts=k, executor=executor) as pop:
                    answers = [pop.solve(q) for q in problems]
                losses = []
                for q, a, whole in zip(problems, answers, optima[name], strict=True):
                    best, got = whole.objective, value(q, a.X)
                    losses.append(sign * (best - got) / abs(best) if best and got is not None else float("nan"))
                again = [a.solve_time for a in answers[1:]]
                stages = answers[-1].stats
                pop_rows.append(
                    (
                        name,
                        k,
                        stages["executor"],
                        answers[0].solve_time,
                        statistics.median(again) if again else float("nan"),
                        losses,
                        stages,
                    )
                )
                print(
                    f"{name} POP-{k} {executor}: first {answers[0].solve_time:.2f} s, loss {max(losses):.4%}",
                    flush=True,
                )
    total = int(sum(gpus))
    lines = [
        "# Time-share policies at scale",
        "",
        f"Command: `{command_line()}`. {machine()}.",
        "",
        f"{args.jobs} synthetic jobs from the Gavel job mix (seed {args.seed}) on {total} GPUs "
        f"({', '.join(f'{g} {m}' for g, m in zip(gpus, MODELS, strict=True))}); "
        f"the jobs ask {int(problem.scale.sum())} GPUs in all. First solve = building the DPP programs + solving; "
        f"re-solve = the median of {args.repeats} solves after every input moved by up to 1% (a round later).",
        "",
        "| policy | solver | status | first solve (s) | re-solve (s) | GPUs allocated |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, first, again, status, used in rows:
        solver = first.stats.get("solver", "numpy (greedy)")
        lines.append(f"| {name} | {solver} | {status} | {first.solve_time:.2f} | {again:.2f} | {used:.0f} of {total} |")
    if pop_rows:
        lines += [
            "",
            "Partitioned (POP, `get_policy(name, parts=k, executor=...)`) on the same problems: the loss is the "
            "policy's objective on the whole problem against the whole program's optimum, relative (median and worst "
            f"of the {len(problems)} solves); stages of the last solve: partition, the parts' passes (two: the "
            "rebalancing pass), the slowest part.",
            "",
            "| policy | parts | executor | first solve (s) | re-solve (s) | loss median | loss worst | passes | partition (s) | parts (s) | slowest part (s) |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, k, where, first_t, again, losses, st in pop_rows:
            lines.append(
                f"| {name} | {k} | {where} | {first_t:.2f} | {again:.2f} | {statistics.median(losses):.3%} | "
                f"{max(losses):.3%} | {st['passes']} | {st['partition_time']:.3f} | {st['parts_time']:.2f} | "
                f"{max(st['part_solve_times']):.2f} |"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
