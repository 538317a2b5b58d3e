"""Time-share policies at scale: solve time per round at 2,048 jobs on 1,536 GPUs of three types.

Run: ``python benchmarks/timeshare_scale.py [--traces DIR] [--jobs 2048] [--gpus 512,512,512]
[--policy NAME ...] [--repeats 3] [--parts 4] [--out benchmarks/results/timeshare_scale.md]``

The jobs are synthetic from the Gavel job mix: job types drawn uniformly from the 26 types of
``simulation_throughputs.json`` (as Gavel's trace generator does), GPU counts from the Philly mix of the
``0e4a51`` trace (1 x 436, 2 x 226, 4 x 451, 8 x 68), throughputs on V100 / P100 / K80 from the profile
(the 1-GPU rate where a pair has none), work = the throughput on V100 times a lognormal duration
(median 1 day), a random part of it done, priority weights 1 (90%) or 2. Per policy: the first solve
(which builds the DPP programs), then ``--repeats`` re-solves with every remaining work and elapsed time
moved by up to 1% and the throughputs by up to 1% (as between two rounds: so the answer is not reused),
median reported. ``--parts`` also times the partitioned building block
(:meth:`SharePolicy.solve_part`): the jobs split in that many parts, each with its share of every GPU
type, solved one after the other (the scale-out issue runs them in parallel).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sim_common import REPO, command_line, default_traces, machine

from optalloc.io.gavel import read_throughputs
from optalloc.timeshare import ShareProblem, get_policy

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
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "timeshare_scale.md"))
    args = parser.parse_args(argv)
    path = Path(args.traces) / "gavel" / "simulation_throughputs.json"
    if not path.exists():
        print(f"throughput profile not found: {path} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    gpus = tuple(int(g) for g in args.gpus.split(","))
    problem = synthetic(path, args.jobs, gpus)
    rng = np.random.default_rng(1)
    rows = []
    for name in args.policy or DEFAULT_POLICIES:
        policy = get_policy(name)
        first = policy.solve(problem)
        again = []
        for _ in range(args.repeats):
            shares = policy.solve(jitter(problem, rng))
            again.append(shares.solve_time)
        parted = None
        if args.parts > 1:
            split = np.array_split(np.random.default_rng(2).permutation(problem.n), args.parts)
            started = time.perf_counter()
            parts = [policy.solve_part(problem, idx, problem.capacity / args.parts) for idx in split]
            parted = (time.perf_counter() - started, max(p.solve_time for p in parts), all(p.ok for p in parts))
        used = float((problem.scale @ first.X).sum()) if first.X is not None else float("nan")
        rows.append((name, first, statistics.median(again), shares.status.value, used, parted))
        print(f"{name}: first {first.solve_time:.2f} s, re-solve {statistics.median(again):.2f} s", flush=True)
    total = int(sum(gpus))
    lines = [
        "# Time-share policies at scale",
        "",
        f"Command: `{command_line()}`. {machine()}.",
        "",
        f"{args.jobs} synthetic jobs from the Gavel job mix on {total} GPUs ({', '.join(f'{g} {m}' for g, m in zip(gpus, MODELS, strict=True))}); "
        f"the jobs ask {int(problem.scale.sum())} GPUs in all. First solve = building the DPP programs + solving; "
        f"re-solve = the median of {args.repeats} solves after every input moved by up to 1% (a round later). "
        f"Parts: the jobs in {args.parts} parts, each with 1/{args.parts} of every GPU type, solved one after the other "
        "with `SharePolicy.solve_part` (sum, and the slowest part).",
        "",
        "| policy | solver | status | first solve (s) | re-solve (s) | GPUs allocated | parts: sum (s) | parts: slowest (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, first, again, status, used, parted in rows:
        solver = first.stats.get("solver", "numpy (greedy)")
        p_sum = f"{parted[0]:.2f}" if parted else "-"
        p_max = f"{parted[1]:.2f}" if parted else "-"
        lines.append(
            f"| {name} | {solver} | {status} | {first.solve_time:.2f} | {again:.2f} | {used:.0f} of {total} | {p_sum} | {p_max} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
