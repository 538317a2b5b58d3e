"""Issue 4 figure: the FGD protocol decided in batches by CP-SAT, and the offline optimum.

Protocol (traces README, "How to use (a)"): the 1213 GPU nodes; every pod of a list, then pods drawn
with replacement while the GPU request stays <= 130% of 6212 GPUs; shuffled with a seed. Arrivals are
cut into batches of 1% of the cluster's GPU capacity; each batch is placed by `solve(..., "cpsat",
previous=what is placed)` (no migration, irrevocable, no lookahead beyond the batch). The GPU allocation
ratio is recorded after every batch. The offline optimum places all arrivals at once (`auto`) with the
GPU-only objective, and reports its proven bound: the physical limit of the protocol.

    python benchmarks/exact_batches.py [--lists default,gpushare100,multigpu50] [--seeds 42] [--batch-limit 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from optalloc import Allocation, ObjectiveWeights, Problem, solve
from optalloc.io import openb, synthetic

HERE = Path(__file__).resolve().parent
UPSTREAM_FGD = {"default": 95.39, "gpushare100": 86.90, "multigpu50": 97.18}


def protocol_jobs(traces: Path, name: str, seed: int):  # type: ignore[no-untyped-def]
    t = traces / "alibaba-gpu-v2023"
    nodes = openb.read_nodes(t / "openb_node_list_all_node.csv", gpu_only=True)
    pods = openb.read_pods(t / f"openb_pod_list_{name}.csv")
    capacity = sum(n.gpus for n in nodes) * 1000
    jobs = synthetic.shuffled(synthetic.inflate(pods, capacity_gpu_milli=capacity, target=1.3, seed=seed), seed=seed)
    return nodes, jobs, capacity


def batches(
    nodes,
    jobs,
    capacity: int,
    *,
    limit: float,
    method: str,
    seed: int,
    guide: float = 0.0,
    warm: str = "best-fit",
    forecast: float = 0.0,
) -> tuple[float, float, list[float], int]:  # type: ignore[no-untyped-def]
    """Place arrivals batch by batch; returns (ratio at 130%, solver seconds, ratio after each batch,
    jobs held back by admission control)."""
    placed = Allocation(status="feasible")
    kept: list = []
    batch: list = []
    arrived, mark, step = 0, capacity // 100, capacity // 100
    curve: list[float] = []
    solver_time = 0.0
    allocated = 0
    held = 0
    for i, job in enumerate(jobs):
        batch.append(job)
        arrived += job.gpu_demand * job.replicas
        if arrived < mark and i < len(jobs) - 1:
            continue
        problem = Problem(nodes, kept + batch, current=placed)
        start = time.perf_counter()
        answer = solve(
            problem,
            method,
            time_limit=limit,
            seed=seed,
            fragmentation_guide=guide,
            warm_start=warm,
            admission_forecast=forecast,
        )
        held += sum(1 for u in answer.unplaced if u.reason == "held back")
        solver_time += time.perf_counter() - start
        placed_now = answer.placed_jobs
        kept += [b for b in batch if b.name in placed_now]
        placed = Allocation(answer.placements, status="feasible")
        allocated = sum(len(p.gpus) * p.gpu_milli for p in answer.placements)
        curve.append(100 * allocated / capacity)
        batch = []
        mark += step
    return 100 * allocated / capacity, solver_time, curve, held


def offline(nodes, jobs, *, limit: float, seed: int):  # type: ignore[no-untyped-def]
    gpu_only = ObjectiveWeights(cpu_only_value=0, fragmentation=0, spread=0, migration=0)
    problem = Problem(nodes, jobs, weights=gpu_only)
    answer = solve(problem, "auto", time_limit=limit, seed=seed, warm_start="fgd-plus")
    return answer, problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=Path, default=HERE.parent.parent / "shared" / "data" / "traces")
    ap.add_argument("--lists", default="default,gpushare100,multigpu50")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--batch-limit", type=float, default=2.0)
    ap.add_argument("--offline-limit", type=float, default=60.0)
    ap.add_argument("--method", default="auto", help="auto = best-fit warm start, then CP-SAT")
    ap.add_argument("--guide", type=float, default=0.05, help="fragmentation guide of the batch solves (0 = off)")
    ap.add_argument("--warm-start", default="fgd-plus", help="heuristic that auto hints CP-SAT with")
    ap.add_argument("--no-offline", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "exact_batches.md")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        "# The FGD protocol in batches, and the offline optimum (issue 4)",
        "",
        f"Command: `python benchmarks/exact_batches.py --lists {args.lists} --seeds {args.seeds} "
        f"--batch-limit {args.batch_limit:g} --offline-limit {args.offline_limit:g} --method {args.method} --guide {args.guide:g} --warm-start {args.warm_start}`. "
        "GPU allocation ratio (allocated GPUs / 6212) at 130% arrived; batches of 1% of capacity; median over seeds.",
        "",
        "| list | upstream FGD (online) | batches of 1% (ours) | solver s per run | offline (ours) | offline proven bound |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.lists.split(","):
        ratios, times, offs, bounds = [], [], [], []
        for seed in seeds:
            nodes, jobs, capacity = protocol_jobs(args.traces, name, seed)
            ratio, spent, _ = batches(
                nodes,
                jobs,
                capacity,
                limit=args.batch_limit,
                method=args.method,
                seed=seed,
                guide=args.guide,
                warm=args.warm_start,
            )
            ratios.append(ratio)
            times.append(spent)
            print(f"{name} seed {seed}: batches {ratio:.2f}% ({spent:.0f}s solver)", flush=True)
            if args.no_offline:
                continue
            answer, problem = offline(nodes, jobs, limit=args.offline_limit, seed=seed)
            offs.append(100 * answer.summary(problem).gpu_allocation_ratio)
            bounds.append(100 * (answer.bound or float("nan")) / capacity)
            print(f"{name} seed {seed}: offline {offs[-1]:.2f}% (bound {bounds[-1]:.2f}%, {answer.method})", flush=True)
        med = statistics.median
        if not offs:
            offs, bounds = [float("nan")], [float("nan")]
        lines.append(
            f"| {name} | {UPSTREAM_FGD[name]:.2f}% | {med(ratios):.2f}% | {med(times):.0f} | {med(offs):.2f}% | {med(bounds):.2f}% |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
