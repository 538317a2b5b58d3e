"""POP: partitioned optimisation (Narayanan et al., SOSP'21) — solve k scaled copies of the problem in parallel.

A large allocation problem is split into ``parts`` sub-problems, each a scaled copy of the whole: the
nodes of every shape (GPU model, GPU count, CPU, memory, labels) and the jobs of every demand class are
dealt out in turn, so that each part holds about 1/k of each. Gangs stay whole (a job is dealt as one),
and what runs now stays with its nodes (nodes linked by a running multi-node job go together). The parts
are solved in parallel with any method (``inner``), on Ray when it is installed and running or asked
for, else in a local process pool; their answers are merged, and a repair pass places what the parts
left out in the capacity left anywhere (best-fit over the whole cluster). The merged answer goes through
``verify`` like every other.

The bound reported is the whole problem's (the pooled-capacity bound, computed before the parts): the
sum of the parts' bounds is *not* a bound of the whole — a job left out of its part may fit another
part's leftovers — so it is reported only as ``stats["part_bounds"]``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optalloc.core import Allocation, ClusterState, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.budget import Budget
from optalloc.core.cpus import usable_cpus
from optalloc.core.options import SolveOptions

log = logging.getLogger(__name__)

#: Seconds kept back after the parts for merging, the repair pass and the verification of the whole.
MERGE_RESERVE = 0.05
#: The share of a wave's time its parts' solves get (the rest: starting workers, sending answers back).
PART_SHARE = 0.9


@dataclass(frozen=True)
class Part:
    """One sub-problem: node and job indices of the whole problem."""

    nodes: tuple[int, ...]
    jobs: tuple[int, ...]


def partition(problem: Problem, parts: int, seed: int = 0) -> list[Part]:
    """Deal ``problem``'s nodes (by shape) and jobs (by demand class) into ``parts`` scaled copies.

    Within a shape or class, items go in a seeded order of their names (not their list positions, so
    the partition does not depend on the input order); one rotation continues across shapes and
    classes, so every part ends with the same number of nodes and jobs to within one.
    """
    if parts < 1:
        raise ValueError("parts must be at least 1")
    running = problem.current.by_job() if problem.current is not None else {}
    n_nodes, n_jobs = len(problem.nodes), len(problem.jobs)
    # Nodes linked by a running job are dealt as one block (the block of its first node).
    block = np.arange(n_nodes)
    if running:
        parent = list(range(n_nodes))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for places in running.values():
            idx = [problem.node_index[p.node] for p in places]
            for other in idx[1:]:
                parent[find(other)] = find(idx[0])
        block = np.array([find(i) for i in range(n_nodes)])
    heads = np.flatnonzero(block == np.arange(n_nodes))
    size = np.bincount(block, minlength=n_nodes)[heads]
    labels = np.array([hash_text(repr(sorted(n.labels.items()))) for n in problem.nodes], dtype=np.int64)
    shape = np.column_stack(
        [size, problem.node_model[heads], problem.capacity[heads], problem.node_gpu_memory[heads], labels[heads]]
    )
    names = np.array([hash_text(f"{seed}:{problem.nodes[h].name}") for h in heads.tolist()], dtype=np.int64)
    head_part = _deal(shape, names, parts)
    node_part = head_part[np.searchsorted(heads, block)]
    # Jobs: running ones go with their nodes; the others by demand class.
    job_part = np.full(n_jobs, -1, dtype=np.int64)
    for name, places in running.items():
        job_part[problem.job_index[name]] = node_part[problem.node_index[places[0].node]]
    free = np.flatnonzero(job_part < 0)
    if len(free):
        keys: dict[tuple, int] = {}  # demand class -> a stable hash (not first-seen order: order-independent)
        key_of = np.array(
            [
                keys.get(k) or keys.setdefault(k, hash_text(repr(k)))
                for k in (problem.jobs[j].demand_key for j in free.tolist())
            ],
            dtype=np.int64,
        )
        job_names = np.array([hash_text(f"{seed}:{problem.jobs[j].name}") for j in free.tolist()], dtype=np.int64)
        job_part[free] = _deal(key_of[:, None], job_names, parts)
    return [
        Part(tuple(np.flatnonzero(node_part == k).tolist()), tuple(np.flatnonzero(job_part == k).tolist()))
        for k in range(parts)
    ]


def _deal(groups: np.ndarray, names: np.ndarray, parts: int) -> np.ndarray:
    """Deal items into parts in one rotation: groups in a fixed order, items within a group by name hash."""
    order = np.lexsort((names, *groups.T[::-1]))
    out = np.empty(len(names), dtype=np.int64)
    out[order] = np.arange(len(names)) % parts
    return out


def hash_text(text: str) -> int:
    """A stable 63-bit hash of a string (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def sub_problem(problem: Problem, part: Part) -> Problem:
    """The part as a problem of its own (the whole catalogue of GPU models, its share of what runs)."""
    nodes = tuple(problem.nodes[n] for n in part.nodes)
    jobs = tuple(problem.jobs[j] for j in part.jobs)
    current = None
    if problem.current is not None:
        names = {job.name for job in jobs}
        placements = tuple(p for p in problem.current.placements if p.job in names)
        if placements:
            current = Allocation(placements, method="current", status=Status.FEASIBLE)
    return Problem(nodes, jobs, current=current, weights=problem.weights, gpu_models=problem.gpu_models)


def solve_part(problem: Problem, method: str, options: dict[str, Any]) -> Allocation:
    """Solve one part (in a worker process or a Ray task): a plain function of picklable data."""
    from optalloc.solve import solve

    return solve(problem, method, **options)


#: The parts a local pool's workers inherit when they are forked (so that only an index is sent to them).
_FORKED: list[Problem] = []


def _solve_forked(index: int, method: str, options: dict[str, Any]) -> Allocation:
    return solve_part(_FORKED[index], method, options)


def engine(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
    """The ``pop`` method: partition, solve the parts in parallel, merge, repair."""
    from optalloc.anytime import early_bound, proven

    start = time.perf_counter()
    early_bound(problem, options, budget)
    parts = max(1, min(options.parts, len(problem.nodes) or 1))
    layout = partition(problem, parts, options.seed)
    problems = [sub_problem(problem, part) for part in layout]
    partition_time = time.perf_counter() - start
    runner, workers, where = _executor(options, parts)
    waves = math.ceil(parts / workers)
    left = budget.left() - MERGE_RESERVE - _repair_reserve(problem)
    # Each wave of parts also pays for starting its workers and sending the answers back: a tenth of its time.
    per_part = None if not budget.limited else max(0.05, PART_SHARE * left / waves)
    part_options = {
        **options.to_dict(),
        "time_limit": per_part,
        "verify": False,  # the merged answer is verified once, as a whole
    }
    for key in ("parts", "inner", "executor", "ray_address"):
        part_options.pop(key, None)
    t0 = time.perf_counter()
    answers = runner(problems, options.inner, part_options, budget)
    parts_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = _merge(problem, answers)
    merge_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not budget.expired():
        merged = _repair(problem, merged, options, budget)
    repair_time = time.perf_counter() - t0
    value = evaluate(problem, merged)
    objective = float(value.primary if problem.weights.lexicographic else value.total)
    budget.improve("pop", objective=objective)
    stats = {
        "parts": parts,
        "inner": options.inner,
        "executor": where,
        "workers": workers,
        "part_time_limit": per_part,
        "part_objectives": [a.objective for a in answers],
        "part_bounds": [a.bound for a in answers],
        "partition_time": round(partition_time, 4),
        "parts_time": round(parts_time, 4),
        "merge_time": round(merge_time, 4),
        "repair_time": round(repair_time, 4),
        "repaired": merged.stats.get("repaired", 0),
    }
    answer = merged.replace(method="pop", status=Status.FEASIBLE, objective=objective, bound=None, stats=stats)
    return proven(answer, budget)


def _repair_reserve(problem: Problem) -> float:
    return 2e-6 * len(problem.jobs) + 2e-6 * len(problem.nodes)


def _merge(problem: Problem, answers: list[Allocation]) -> Allocation:
    """The parts' answers side by side (they share no node and no job)."""
    from optalloc.core.state import allocation_of

    placements = tuple(p for answer in answers for p in answer.placements)
    unplaced = tuple(u for answer in answers for u in answer.unplaced)
    return allocation_of(placements, unplaced, status=Status.FEASIBLE, stats={}, method="pop")


#: Reasons a part may give for a job that another part's leftovers could still hold.
RETRY = (Reason.INSUFFICIENT_CAPACITY, Reason.TIME_LIMIT, Reason.NOT_SELECTED)


def _repair(problem: Problem, merged: Allocation, options: SolveOptions, budget: Budget) -> Allocation:
    """Place what the parts left out in what the whole cluster has left (best-fit, most valuable first)."""
    from optalloc import heuristics

    todo = sorted(
        (u for u in merged.unplaced if u.reason in RETRY),
        key=lambda u: -int(problem.replica_value[problem.job_index[u.job]]),
    )
    if not todo:
        return merged
    placer = heuristics.Placer(problem, "best-fit", seed=options.seed, state=ClusterState.of(problem, merged))
    added = []
    kept: list[Unplaced] = [u for u in merged.unplaced if u.reason not in RETRY]
    for i, u in enumerate(todo):
        if i % 256 == 0 and budget.expired():
            kept.extend(todo[i:])  # not tried again: they keep their part's reason
            break
        got = placer.place(problem.job_index[u.job])
        if got is not None:
            added.extend(got)
        else:  # tried on the whole cluster's leftovers: it does not fit them
            kept.append(u if u.reason != Reason.TIME_LIMIT else Unplaced(u.job, Reason.INSUFFICIENT_CAPACITY))
    return merged.replace(
        placements=merged.placements + tuple(added),
        unplaced=tuple(kept),
        stats={**merged.stats, "repaired": len({p.job for p in added})},
    )


# Executors -------------------------------------------------------------------------------------------
Runner = Callable[[list[Problem], str, dict[str, Any], Budget], list[Allocation]]


def _executor(options: SolveOptions, parts: int) -> tuple[Runner, int, str]:
    """Where the parts run: Ray (asked for, or installed and running), a local process pool, or here."""
    cpus = usable_cpus()
    kind = options.executor
    if kind == "auto":
        kind = "ray" if _ray_ready(options.ray_address) else ("local" if parts > 1 and cpus > 1 else "serial")
    if kind == "ray":
        import ray

        _ray_init(options.ray_address)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return _run_ray, min(workers, parts), "ray"
    if kind == "local":
        return _run_local, max(1, min(cpus, parts)), "local"
    return _run_serial, 1, "serial"


def _ray_ready(address: str | None) -> bool:
    """Ray is used by default when it is installed and either already running here or an address is given."""
    try:
        import ray
    except ImportError:
        return False
    return bool(address) or ray.is_initialized()


def _ray_init(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)


def _run_serial(problems: list[Problem], method: str, options: dict[str, Any], budget: Budget) -> list[Allocation]:
    return [solve_part(p, method, options) for p in problems]


def _run_local(problems: list[Problem], method: str, options: dict[str, Any], budget: Budget) -> list[Allocation]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(len(problems), usable_cpus()))
    # The workers are forked with the parts in memory: only an index travels to them, an answer back.
    _FORKED[:] = problems
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_solve_forked, k, method, options) for k in range(len(problems))]
            return [f.result() for f in futures]
    finally:
        _FORKED.clear()


def _run_ray(problems: list[Problem], method: str, options: dict[str, Any], budget: Budget) -> list[Allocation]:
    import ray

    task = ray.remote(solve_part)
    refs = [task.remote(ray.put(p), method, options) for p in problems]
    return list(ray.get(refs))
