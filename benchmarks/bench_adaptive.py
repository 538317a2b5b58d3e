"""Benchmark of the adaptive loop: what a controller step costs, what the horizon model answers, and a
small replay showing what the horizon model is worth on job completion time (JCT).

Run: ``python benchmarks/bench_adaptive.py [--traces DIR] [--replay-jobs 200] [--out benchmarks/results/adaptive.md]``

1. Step cost on the openb cluster (1213 GPU nodes; the first 3000 pods of the default list): the
   initial re-solve (best-fit), then no-trigger steps without and with an observation of every node.
2. The horizon model alone: 40 jobs of 1/2/4/8 GPUs on 4 x 8 GPUs (where the shortest-first list
   schedule is not optimal), and a queue of 64 openb pods behind a cluster filled with running ones.
3. A replay (a minimal event loop written here, not the simulator of a later task): Philly-like jobs
   (``optalloc.io.synthetic.philly_like``, seed 0) on 4 x 8 V100, arriving every 300 s on average, so the
   queue builds up. The controller is driven at every arrival and completion. Policies: admission FCFS
   and SJF with best-fit (no horizon), and the horizon model (7 days, 24 slots growing x1.2) whose
   starts are placed by ``auto`` and by ``best-fit``. Durations are the generator's (the estimate is
   the true duration, as an oracle SJF assumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from optalloc import Job, Node, Problem
from optalloc.adaptive import (
    ActionKind,
    ControllerConfig,
    ControllerState,
    Event,
    HorizonConfig,
    NodeUsage,
    Observation,
    step,
)
from optalloc.core import usable_cpus
from optalloc.io import openb
from optalloc.io.synthetic import philly_like
from optalloc.models.horizon import plan_horizon

HERE = Path(__file__).resolve().parent


def step_cost(traces: Path) -> list[str]:
    base = traces / "alibaba-gpu-v2023"
    nodes = openb.read_nodes(base / "openb_node_list_all_node.csv", gpu_only=True)
    pods = openb.read_pods(base / "openb_pod_list_default.csv")[:3000]
    problem = Problem(tuple(nodes), tuple(pods))
    cfg = ControllerConfig(method="best-fit")
    t = time.perf_counter()
    st, _ = step(ControllerState.initial(problem, cfg), 0.0)
    initial = time.perf_counter() - t
    n = 2000
    t = time.perf_counter()
    for i in range(n):
        st, _ = step(st, 1.0 + i)
    bare = (time.perf_counter() - t) / n
    # An observation matching the plan (no drift): the cost of folding it in.
    planned = {p.node: 0.0 for p in st.allocation.placements}
    for p in st.allocation.placements:
        planned[p.node] += len(p.gpus) * p.gpu_milli
    obs = Observation(0.0, {nd.name: NodeUsage(gpu_milli=planned.get(nd.name, 0.0)) for nd in nodes})
    st, _ = step(st, 10_000.0, obs.at(10_000.0))
    resolves = st.resolves
    t = time.perf_counter()
    for i in range(n):
        st, _ = step(st, 10_001.0 + i, obs.at(10_001.0 + i))
    observed = (time.perf_counter() - t) / n
    assert st.resolves == resolves, "the matching observation should trigger nothing"
    return [
        "| measure | value |",
        "|---|---|",
        f"| cluster | {len(nodes)} GPU nodes, {len(pods)} pods ({len(st.running)} placed, {len(st.queue)} waiting) |",
        f"| initial re-solve (best-fit), s | {initial:.3f} |",
        f"| no-trigger step without observation, µs | {bare * 1e6:.0f} |",
        f"| no-trigger step with an observation of every node, ms | {observed * 1e3:.2f} |",
    ]


def horizon_alone(traces: Path) -> list[str]:
    rows = ["| instance | jobs modelled | status | objective (s) | bound (s) | wall (s) |", "|---|---|---|---|---|---|"]
    nodes = tuple(Node(f"n{i}", cpu=64000, memory=256000, gpus=8, gpu_model="A") for i in range(4))
    jobs = tuple(
        Job(f"j{i}", gpus=(1, 2, 4, 8)[i % 4], cpu=4000, memory=8000, duration=60 * (1 + i % 7), arrival=i)
        for i in range(40)
    )
    for limit in (0.2, 1.0):
        h = plan_horizon(Problem(nodes, jobs), config=HorizonConfig(horizon=3600, slots=24, time_limit=limit))
        rows.append(
            f"| 40 jobs on 4x8 GPUs, limit {limit}s | 40 | {h.status} | {h.objective:.0f} | {h.bound:.0f} | {h.wall_time:.2f} |"
        )
    # openb: 40 sampled nodes filled with running pods, 64 more waiting.
    base = traces / "alibaba-gpu-v2023"
    rng = random.Random(0)
    all_nodes = openb.read_nodes(base / "openb_node_list_all_node.csv", gpu_only=True)
    pods = openb.read_pods(base / "openb_pod_list_default.csv")
    sample_nodes = tuple(rng.sample(all_nodes, 40))
    sample = [
        dataclasses.replace(p, duration=float(rng.choice([300, 900, 1800, 3600, 7200]))) for p in rng.sample(pods, 600)
    ]
    full = Problem(sample_nodes, tuple(sample))
    from optalloc.solve import solve

    packed = solve(full, "best-fit")
    running = {p.job for p in packed.placements}
    waiting = [j for j in sample if j.name not in running][:64]
    keep = [j for j in sample if j.name in running] + waiting
    problem = Problem(sample_nodes, tuple(keep), current=packed.replace(unplaced=()))
    remaining = {name: float(rng.choice([600, 1800, 3600, 7200])) for name in running}
    for limit in (0.5, 2.0):
        h = plan_horizon(
            problem, remaining=remaining, config=HorizonConfig(horizon=4 * 3600, slots=24, growth=1.1, time_limit=limit)
        )
        rows.append(
            f"| openb: 40 nodes full, 64 pods waiting, limit {limit}s | {len(h.start)} | {h.status} | "
            f"{h.objective:.0f} | {h.bound:.0f} | {h.wall_time:.2f} |"
        )
    return rows


def replay(problem: Problem, config: ControllerConfig) -> dict[str, float]:
    """Drive the controller at every arrival and completion; JCT = completion - arrival."""
    jobs = {j.name: j for j in problem.jobs}
    st = ControllerState.initial(Problem(problem.nodes, ()), config)
    heap = [(j.arrival, 0, j.name, -1) for j in problem.jobs]  # (time, kind 0=arrive 1=done, job, version)
    heapq.heapify(heap)
    version: dict[str, int] = {}
    done: dict[str, float] = {}
    steps, solve_time = 0, 0.0
    t0 = time.perf_counter()
    while heap:
        now = heap[0][0]
        events = []
        while heap and heap[0][0] == now:
            _, kind, name, ver = heapq.heappop(heap)
            if kind == 0:
                events.append(Event.arrival(jobs[name]))
            elif version.get(name) == ver:
                events.append(Event.completion(name))
                done[name] = now
        if not events:
            continue
        st, plan = step(st, now, None, events)
        steps += 1
        solve_time += plan.solve_time
        for a in plan.actions:
            if a.kind in (ActionKind.START, ActionKind.PREEMPT):
                version[a.job] = version.get(a.job, 0) + 1
            if a.kind is ActionKind.START:
                duration = jobs[a.job].duration or 0.0
                heapq.heappush(heap, (now + duration, 1, a.job, version[a.job]))
    jct = np.array([done[n] - jobs[n].arrival for n in done])
    return {
        "done": len(done),
        "mean": float(jct.mean()) / 3600,
        "median": float(np.median(jct)) / 3600,
        "p99": float(np.percentile(jct, 99)) / 3600,
        "steps": steps,
        "wall": time.perf_counter() - t0,
        "solve": solve_time,
    }


def replay_table(n_jobs: int) -> list[str]:
    problem = philly_like(jobs=n_jobs, nodes=4, seed=0, mean_interarrival=300.0)
    horizon = HorizonConfig(horizon=7 * 86400.0, slots=24, growth=1.2, time_limit=0.3)
    policies = [
        ("admission FCFS + best-fit", ControllerConfig.of(method="best-fit", order="fcfs")),
        ("admission SJF + best-fit", ControllerConfig.of(method="best-fit", order="sjf")),
        ("horizon model, starts placed by best-fit", ControllerConfig(method="best-fit", horizon=horizon)),
        ("horizon model, starts placed by auto", ControllerConfig.of(method="auto", budget=1.0, horizon=horizon)),
    ]
    rows = [
        "| policy | jobs done | mean JCT (h) | median JCT (h) | p99 JCT (h) | mean JCT / FCFS | controller steps | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fcfs = None
    for name, cfg in policies:
        r = replay(problem, cfg)
        fcfs = fcfs or r["mean"]
        rows.append(
            f"| {name} | {r['done']} | {r['mean']:.1f} | {r['median']:.1f} | {r['p99']:.1f} | "
            f"{r['mean'] / fcfs:.2f} | {r['steps']} | {r['wall']:.1f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    gpus = sum(n.gpus for n in problem.nodes)
    work = sum((j.duration or 0) * j.gpus for j in problem.jobs) / 3600
    span = max(j.arrival for j in problem.jobs) / 3600
    rows.append("")
    rows.append(
        f"{n_jobs} Philly-like jobs on {gpus} GPUs: {work:.0f} GPU-hours of work arriving within {span:.1f} h "
        "(the queue builds up: the cluster needs about "
        f"{work / gpus / 24:.1f} days at full use)."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("OPTALLOC_TRACES", HERE.parent.parent / "shared" / "data" / "traces"))
    parser.add_argument("--traces", type=Path, default=default)
    parser.add_argument("--replay-jobs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "adaptive.md")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = [
        "# Adaptive loop",
        "",
        f"`python benchmarks/bench_adaptive.py --replay-jobs {args.replay_jobs}` on {platform.machine()} with "
        f"{usable_cpus()} cores, Python {platform.python_version()}; CP-SAT with 1 worker for the horizon model. "
        "Timings are of one run on a shared machine: noisy.",
        "",
        "## Step cost (openb cluster)",
        "",
        *step_cost(args.traces),
        "",
        "## The horizon model alone",
        "",
        *horizon_alone(args.traces),
        "",
        "## Replay: what the horizon model is worth on JCT",
        "",
        *replay_table(args.replay_jobs),
        "",
        f"Whole benchmark: {time.perf_counter() - started:.0f} s. The CP-SAT horizon model stops at its time limit "
        "when not proven optimal, so its replay wall time is mostly that limit times the number of steps.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
