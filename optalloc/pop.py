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

import gc
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from optalloc.core import Allocation, ClusterState, Placement, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.budget import Budget
from optalloc.core.cpus import usable_cpus
from optalloc.core.options import SolveOptions

log = logging.getLogger(__name__)

# What POP's own stages cost on an unloaded machine (seconds; measured on openb_like problems of 10,000
# and 50,000 nodes with 8 jobs per node, the collector paused, on 2 cores shared with another job at a low
# priority: a little above unloaded, on the safe side). Each is stretched by the budget's pace
# (Budget.pace: how much slower the machine runs now), which the partition itself measures: the time the
# parts get is what is left once these are set aside.
#: Partition and sub-problems, per job and per node of the whole (the pace's yardstick: 1.5 s at 50,000 nodes).
SPLIT_PER_JOB = 3e-6
SPLIT_PER_NODE = 5e-6
#: Starting the parts (forking the workers, or handing the parts to Ray).
WAVE_START = 0.2
#: Sending one part's answer back (pickling and unpickling it), per job of the part.
SHIP_PER_JOB = 4e-6
#: After the parts: merging their answers, setting up the repair pass (the whole cluster's state after
#: the merged answer, the jobs to try again) and evaluating the result, per job and per node of the whole
#: (3 s at 50,000 nodes). The repair then places jobs until the time kept for the evaluation.
AFTER_PER_JOB = 6e-6
AFTER_PER_NODE = 10e-6
#: Evaluating the merged answer, per job of the whole (part of the above: kept back from the repair).
EVALUATE_PER_JOB = 2e-6
#: The fewest seconds a part is given (it answers with a heuristic's partial answer at worst).
MIN_PART = 0.05
#: The share of its time a part's end comes early: the inner solve answered up to a second after its time
#: limit on parts of 3,000-12,500 nodes on a loaded machine (what runs after a part's last check).
PART_MARGIN = 0.05


@dataclass(frozen=True)
class Part:
    """One sub-problem: node and job indices of the whole problem."""

    nodes: tuple[int, ...]
    jobs: tuple[int, ...]


def partition(problem: Problem, parts: int, seed: int = 0) -> list[Part]:
    """Deal ``problem``'s nodes (by shape) and jobs (by demand class) into ``parts`` scaled copies.

    Within a shape or class, items go in a seeded order of their names (:func:`hash_names`: not their
    list positions, so the partition does not depend on the input order); shapes and classes go in the
    order of their values, and one rotation continues across them, so every part ends with the same
    number of nodes and jobs to within one, and of each shape and class to within one.
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
        block = np.array([find(i) for i in range(n_nodes)], dtype=np.int64)
    heads = np.flatnonzero(block == np.arange(n_nodes))
    size = np.bincount(block, minlength=n_nodes)[heads]
    labels = _codes([tuple(sorted(m.items())) if m else () for m in map(attrgetter("labels"), problem.nodes)])
    shape = np.column_stack(
        [size, problem.node_model[heads], problem.capacity[heads], problem.node_gpu_memory[heads], labels[heads]]
    )
    node_names = list(map(attrgetter("name"), problem.nodes))
    head_part = _deal(shape, hash_names(list(map(node_names.__getitem__, heads.tolist())), seed), parts)
    node_part = head_part[np.searchsorted(heads, block)]
    # Jobs: running ones go with their nodes; the others by demand class (Job.demand_key, as columns).
    job_part = np.full(n_jobs, -1, dtype=np.int64)
    for name, places in running.items():
        job_part[problem.job_index[name]] = node_part[problem.node_index[places[0].node]]
    free = np.flatnonzero(job_part < 0)
    if len(free):
        names = list(map(attrgetter("name"), problem.jobs))
        if len(free) < n_jobs:
            names = list(map(names.__getitem__, free.tolist()))
        job_part[free] = _deal(_job_classes(problem)[free], hash_names(names, seed), parts)
    node_order = np.argsort(node_part, kind="stable")
    job_order = np.argsort(job_part, kind="stable")
    node_cut = np.searchsorted(node_part[node_order], np.arange(parts + 1))
    job_cut = np.searchsorted(job_part[job_order], np.arange(parts + 1))
    return [
        Part(
            tuple(node_order[node_cut[k] : node_cut[k + 1]].tolist()),
            tuple(job_order[job_cut[k] : job_cut[k + 1]].tolist()),
        )
        for k in range(parts)
    ]


def _job_classes(problem: Problem) -> np.ndarray:
    """int64 (m, 11): each job's demand class (:attr:`Job.demand_key`) as integer columns, from the
    problem's numpy views and the ranks of its rules (GPU models, node selector, placement)."""
    jobs = problem.jobs
    selectors: list[tuple[tuple[str, str], ...]] = [()] * len(jobs)
    given = list(map(attrgetter("node_selector"), jobs))
    for j in [j for j, selector in enumerate(given) if selector]:
        selectors[j] = tuple(sorted(given[j].items()))
    models = _codes(list(map(attrgetter("gpu_models"), jobs)), key=sorted)
    # str() of a PlacementRule is its value (a StrEnum), without the enum's Python-level hash per job.
    placements = _codes(list(map(str, map(attrgetter("placement"), jobs))))
    return np.column_stack(
        [
            problem.demand,
            problem.job_gpus,
            problem.job_gpu_memory,
            problem.job_replicas,
            problem.job_min_replicas,
            problem.job_priority,
            models,
            _codes(selectors),
            placements,
        ]
    )


def _codes(values: list[Any], key: Callable[[Any], Any] | None = None) -> np.ndarray:
    """int64: each value's rank among the distinct ``values`` in sorted order (by ``key``), so the same
    whatever the order of the input (unlike the order in which they are first seen)."""
    first: dict[Any, int] = {}
    seen = [first.setdefault(v, len(first)) for v in values]
    rank = np.empty(len(first), dtype=np.int64)
    rank[[first[v] for v in sorted(first, key=key)]] = np.arange(len(first))
    return rank[np.asarray(seen, dtype=np.int64)] if values else np.zeros(0, dtype=np.int64)


def _deal(groups: np.ndarray, names: np.ndarray, parts: int) -> np.ndarray:
    """Deal items into parts in one rotation: groups in a fixed order, items within a group by name hash."""
    order = np.lexsort((names, *groups.T[::-1]))
    out = np.empty(len(names), dtype=np.int64)
    out[order] = np.arange(len(names)) % parts
    return out


_MASK = (1 << 64) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = np.uint64(0x100000001B3)
#: Code points hashed per numpy pass (bounds the memory of :func:`hash_names`: 4 bytes each).
_CHUNK = 1 << 20


def hash_names(names: Sequence[str], seed: int = 0) -> np.ndarray:
    """int64 (len(names),): a stable, seeded 63-bit hash of each name (the same in every process and on
    every machine, unlike ``hash``): FNV-1a over the name's code points, finished by splitmix64.

    Vectorised: the names, as fixed-width UCS-4 arrays (names hold no NUL, so the zero padding is
    skipped and a name's hash does not depend on the others), are hashed one character position at a
    time over all names at once; names are taken in order of length, so a few long names do not widen
    the arrays of all the others."""
    out = np.empty(len(names), dtype=np.int64)
    if not names:
        return out
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    order = np.argsort(lengths, kind="stable")
    start = np.uint64(_splitmix(_FNV_OFFSET ^ (seed & _MASK)))
    lo = 0
    while lo < len(order):
        width = int(lengths[order[lo]])
        hi = min(len(order), lo + max(1, _CHUNK // max(width, 1)))
        width = int(lengths[order[hi - 1]])
        rows = order[lo:hi]
        text = np.array([names[i] for i in rows.tolist()], dtype=f"<U{width}")
        codes = text.view("<u4").reshape(len(rows), width).astype(np.uint64)
        h = np.full(len(rows), start, dtype=np.uint64)
        for c in range(width):
            column = codes[:, c]
            h = np.where(column != 0, (h ^ column) * _FNV_PRIME, h)
        out[rows] = (_splitmix_array(h) >> np.uint64(1)).astype(np.int64)
        lo = hi
    return out


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _splitmix_array(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> np.uint64(31))
    return out


def sub_problem(problem: Problem, part: Part) -> Problem:
    """The part as a problem of its own (the whole catalogue of GPU models, its share of what runs):
    :meth:`Problem.subset`, which does not validate the whole's nodes and jobs again."""
    return problem.subset(part.nodes, part.jobs)


def solve_part(problem: Problem, method: str, options: dict[str, Any], end: float | None = None) -> Allocation:
    """Solve one part (in a worker process or a Ray task): a plain function of picklable data.

    ``end`` (``time.time()``): when the part's answer must be ready to send back; the part's time limit is
    then what is left of it when the part starts (at most ``options["time_limit"]``, at least
    :data:`MIN_PART`): a part that starts late (an earlier wave ran over, a slow worker start) ends on time
    all the same, and one that starts early (the part before it on its worker answered early) has the time
    that part left."""
    from optalloc.solve import preload, solve

    preload(method)  # a fresh worker (Ray) imports the engines before the part's clock starts
    limit = options.get("time_limit")
    if end is not None and limit is not None:
        limit = max(MIN_PART, min(float(limit), end - time.time()))
        options = {**options, "time_limit": limit}
    answer = solve(problem, method, **options)
    return answer.replace(stats={**answer.stats, "part_time_limit": limit})


#: The parts a local pool's workers inherit when they are forked (so that only an index is sent to them).
_FORKED: list[Problem] = []


def _solve_forked(index: int, method: str, options: dict[str, Any], end: float | None, collect: bool) -> Allocation:
    if collect and not gc.isenabled():
        # A forked worker inherits the parent's objects (and its paused collector): they are frozen, so
        # that its own collections neither walk them nor touch their memory (no copy-on-write of the
        # parent's heap), and collection is on again for the part's own objects.
        gc.freeze()
        gc.enable()
    return solve_part(_FORKED[index], method, options, end)


def split_cost(problem: Problem) -> float:
    """Seconds the partition and the sub-problems take on an unloaded machine, estimated."""
    return SPLIT_PER_JOB * len(problem.jobs) + SPLIT_PER_NODE * len(problem.nodes)


def after_parts(problem: Problem) -> float:
    """Seconds the stages after the parts take before the repair places anything (merge, the repair's
    set-up, the evaluation of the whole), on an unloaded machine, estimated."""
    return AFTER_PER_JOB * len(problem.jobs) + AFTER_PER_NODE * len(problem.nodes)


def shipping(problem: Problem, parts: int) -> float:
    """Seconds one wave of parts spends sending its answers back (pickling and unpickling them) on an
    unloaded machine, estimated."""
    return SHIP_PER_JOB * math.ceil(len(problem.jobs) / max(parts, 1))


@dataclass(frozen=True)
class Schedule:
    """When the parts run: each part's time limit (None: no limit), and when each must be done
    (``time.time()``; None without a limit): part ``k`` runs in wave ``k // workers``."""

    per_part: float | None
    ends: tuple[float | None, ...]

    @property
    def total(self) -> float | None:
        """Seconds from the start of the parts to the end of the last wave (None without a limit)."""
        ends = [e for e in self.ends if e is not None]
        return max(ends) - min(ends) + (self.per_part or 0.0) if ends else None


def schedule(problem: Problem, parts: int, workers: int, budget: Budget) -> Schedule:
    """The parts' time: what the budget has left once the stages after the parts, the workers' start
    and each wave's answers are set aside (all stretched by the budget's pace), shared equally by the
    waves; the parts of wave ``w`` must be done ``w + 1`` shares (and answers) after the start."""
    if not budget.limited:
        return Schedule(None, (None,) * parts)
    waves = math.ceil(parts / workers)
    pace = budget.pace
    start, ship = pace * WAVE_START, pace * shipping(problem, parts)
    left = budget.left() - start - pace * after_parts(problem)
    per_part = max(MIN_PART, (left - waves * ship) / waves)
    now = time.time() + start
    early = ship + PART_MARGIN * per_part
    ends = tuple(now + (k // workers + 1) * (per_part + ship) - early for k in range(parts))
    return Schedule(per_part, ends)


def engine(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
    """The ``pop`` method: partition, solve the parts in parallel, merge, repair.

    Python's cyclic garbage collector is paused meanwhile in this process (:func:`collection_paused`):
    POP's own stages make and receive hundreds of thousands of small objects (the parts' answers), and
    at 50,000 nodes each full collection walks millions (unpickling the answers took twice as long)."""
    with collection_paused() as collect:
        return _engine(problem, options, budget, collect)


@contextmanager
def collection_paused() -> Iterator[bool]:
    """Python's cyclic garbage collection off until the block ends (then as it was before); yields
    whether it was on. (Reference counting still frees everything that is not in a cycle.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield was
    finally:
        if was:
            gc.enable()


def _engine(problem: Problem, options: SolveOptions, budget: Budget, collect: bool) -> Allocation:
    from optalloc.anytime import early_bound, proven

    t0 = budget.clock()
    early_bound(problem, options, budget)
    bound_time = budget.clock() - t0
    parts = max(1, min(options.parts, len(problem.nodes) or 1))
    t0 = budget.clock()
    layout = partition(problem, parts, options.seed)
    partition_time = budget.clock() - t0
    t0 = budget.clock()
    problems = [sub_problem(problem, part) for part in layout]
    build_time = budget.clock() - t0
    if not options.deterministic:
        # The partition's cost per job and node is known: how long it took says how loaded the machine is
        # now, and the forecasts below (and the verification's reserve) stretch with it.
        budget.observe_pace(split_cost(problem), partition_time + build_time)
    runner, workers, where = _executor(options, parts)
    plan = schedule(problem, parts, workers, budget)
    part_options = {
        **options.to_dict(),
        "time_limit": plan.total,  # at most: each part ends at its wave's end (Schedule.ends)
        "verify": False,  # the merged answer is verified once, as a whole
    }
    for key in ("parts", "inner", "executor", "ray_address"):
        part_options.pop(key, None)
    t0 = budget.clock()
    answers = runner(problems, options.inner, part_options, plan.ends, collect)
    parts_time = budget.clock() - t0
    t0 = budget.clock()
    merged = _merge(problem, answers)
    merge_time = budget.clock() - t0
    t0 = budget.clock()
    if not budget.expired():
        merged = _repair(problem, merged, options, budget.narrow(EVALUATE_PER_JOB * len(problem.jobs)))
    repair_time = budget.clock() - t0
    t0 = budget.clock()
    value = evaluate(problem, merged)
    objective = float(value.primary if problem.weights.lexicographic else value.total)
    evaluate_time = budget.clock() - t0
    budget.improve("pop", objective=objective)
    stats = {
        "parts": parts,
        "inner": options.inner,
        "executor": where,
        "workers": workers,
        "part_time_limit": plan.per_part,
        "part_objectives": [a.objective for a in answers],
        "part_bounds": [a.bound for a in answers],
        "part_time_limits": [a.stats.get("part_time_limit") for a in answers],
        "part_walls": [round(a.wall_time, 4) for a in answers],
        "pace": round(budget.pace, 3),
        "bound_time": round(bound_time, 4),
        "partition_time": round(partition_time, 4),
        "build_time": round(build_time, 4),
        "parts_time": round(parts_time, 4),
        "merge_time": round(merge_time, 4),
        "repair_time": round(repair_time, 4),
        "evaluate_time": round(evaluate_time, 4),
        "repaired": merged.stats.get("repaired", 0),
    }
    answer = merged.replace(method="pop", status=Status.FEASIBLE, objective=objective, bound=None, stats=stats)
    return proven(answer, budget)


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
    added: list[Placement] = []
    kept: list[Unplaced] = [u for u in merged.unplaced if u.reason not in RETRY]
    # A job of a class (equal demand) that did not fit the leftovers: no later job of it fits them either
    # (the leftovers only shrink), so it is not tried again (a full cluster leaves tens of thousands out).
    full: set[tuple[Any, ...]] = set()
    for i, u in enumerate(todo):
        if i % 32 == 0 and budget.expired():
            kept.extend(todo[i:])  # not tried again: they keep their part's reason
            break
        j = problem.job_index[u.job]
        key = problem.jobs[j].demand_key
        got = None if key in full else placer.place(j)
        if got is not None:
            added.extend(got)
        else:  # tried on the whole cluster's leftovers: it does not fit them
            full.add(key)
            kept.append(u if u.reason != Reason.TIME_LIMIT else Unplaced(u.job, Reason.INSUFFICIENT_CAPACITY))
    return merged.replace(
        placements=merged.placements + tuple(added),
        unplaced=tuple(kept),
        stats={**merged.stats, "repaired": len({p.job for p in added})},
    )


# Executors -------------------------------------------------------------------------------------------
#: ``runner(problems, method, options, ends, collect)``: ``collect``, whether the parts run with Python's
#: cyclic garbage collection on (it is paused in the process that runs POP).
Runner = Callable[[list[Problem], str, dict[str, Any], tuple[float | None, ...], bool], list[Allocation]]


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


def _run_serial(
    problems: list[Problem], method: str, options: dict[str, Any], ends: tuple[float | None, ...], collect: bool
) -> list[Allocation]:
    if collect:
        gc.enable()  # the parts' own solves, in this process, collect as usual
    try:
        return [solve_part(p, method, options, end) for p, end in zip(problems, ends, strict=True)]
    finally:
        if collect:
            gc.disable()


def _run_local(
    problems: list[Problem], method: str, options: dict[str, Any], ends: tuple[float | None, ...], collect: bool
) -> list[Allocation]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(len(problems), usable_cpus()))
    # The workers are forked with the parts in memory: only an index travels to them, an answer back.
    _FORKED[:] = problems
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_solve_forked, k, method, options, ends[k], collect) for k in range(len(problems))]
            return [f.result() for f in futures]
    finally:
        _FORKED.clear()


def _run_ray(
    problems: list[Problem], method: str, options: dict[str, Any], ends: tuple[float | None, ...], collect: bool
) -> list[Allocation]:
    import ray

    task = ray.remote(solve_part)
    refs = [task.remote(ray.put(p), method, options, end) for p, end in zip(problems, ends, strict=True)]
    return list(ray.get(refs))
