"""Upper bounds on the objective: the LP relaxation of the program, and a pooled-capacity bound.

Two ceilings, both valid for every allocation of the problem:

- ``relax``: the LP relaxation of the compressed program (HiGHS interior point) — the ceiling every gap
  is measured against; its solution, rounded, is also a warm start.
- ``capacity_bound``: the LP of job classes over *pools* (all free capacity of the nodes of one GPU
  model, summed), without node types, arc-flows or gangs. Tiny (classes x models columns), so it
  answers in milliseconds even on 10,000 nodes: the bound an anytime solve reports before the full LP
  is done. Every allocation aggregates to a feasible point of it, so its value bounds the primary term;
  the secondary terms only subtract (non-negative weights), so it bounds the total too.
"""

from __future__ import annotations

from collections import defaultdict
from operator import attrgetter

import numpy as np

from optalloc.core import MILLI, Problem, SolverError, Status
from optalloc.core.budget import Budget
from optalloc.core.options import SolveOptions
from optalloc.models import highs
from optalloc.models.classes import Compression, compress
from optalloc.models.program import Program
from optalloc.models.run import ProgramRun


def relax(
    prog: Program,
    weights: dict[str, int],
    budget: Budget | None = None,
    *,
    reserve: float = 0.0,
    solver: str | None = None,
    presolve: bool = False,
) -> ProgramRun:
    """Maximise the weighted objective over the LP relaxation; ``objective`` and ``bound`` are its value.

    Stops ``reserve`` seconds before ``budget``'s deadline with status ``unknown`` (no bound then).
    ``solver`` / ``presolve``: see :func:`optalloc.models.highs.solve_lp`.
    """
    budget = budget if budget is not None else Budget()
    return highs.solve_lp(prog, weights, budget, reserve=reserve, solver=solver, presolve=presolve)


def lp_bound(problem: Problem, options: SolveOptions | None = None) -> float:
    """The LP-relaxation bound of ``problem``'s objective (compressed program, nodes grouped)."""
    from optalloc.models.formulation import build

    opts = options or SolveOptions()
    form = build(compress(problem, allow_migration=opts.allow_migration))
    weights = {"primary": 1} if problem.weights.lexicographic else form.weights
    run = relax(form.program, weights, Budget(opts.time_limit))
    if run.bound is None:
        raise SolverError(f"LP relaxation ended {run.status.value}")
    return float(np.floor(run.bound + 1e-6))


def _without_work(problem: Problem) -> tuple[bool, float | None]:
    """``(True, bound)`` when a bound needs no work: None when a secondary weight is negative (the
    secondary terms could add value), 0 without jobs or anything running; ``(False, None)`` otherwise."""
    w = problem.weights
    if not w.lexicographic and min(w.migration, w.fragmentation, w.spread) < 0:
        return True, None
    if not problem.jobs:
        return True, 0.0 if problem.current is None else None
    return False, None


def quick_bound(problem: Problem, budget: Budget | None = None) -> float | None:
    """The pooled-capacity bound computed from ``problem``'s arrays alone (no compression): jobs grouped
    by their demand row and the nodes they may use, free capacity summed per GPU model. Tens of
    milliseconds on 150,000 jobs, so an anytime solve reports a bound before its first heuristic."""
    settled, bound = _without_work(problem)
    if settled:
        return bound
    from optalloc.core import ClusterState

    state = ClusterState.of(problem)  # free capacity after what runs now (kept where it runs)
    models = problem.node_model
    pool_of = {m: i for i, m in enumerate(np.unique(models).tolist())}
    node_pool = np.array([pool_of[m] for m in models.tolist()], dtype=np.int64)
    pools = len(pool_of)
    gpu_free = np.where(state.gpu > 0, state.gpu, 0).sum(axis=1)
    cap = np.zeros((pools, 3), dtype=np.int64)
    np.add.at(cap, node_pool, np.stack([state.cpu, state.memory, gpu_free], axis=1))
    # Job groups: equal demand row, replicas, value and eligible pools (jobs already running are fixed).
    waiting, kept = _waiting_and_kept(problem)
    eligible = np.ones((len(problem.jobs), pools), dtype=bool)
    keys: dict[tuple, np.ndarray] = {}
    for j, job in enumerate(problem.jobs):
        if not (job.gpu_models and job.gpu_demand) and not job.node_selector:
            continue  # every node passes its rules
        key = (tuple(sorted(job.gpu_models)) if job.gpu_demand else (), tuple(sorted(job.node_selector.items())))
        if key not in keys:
            ok = np.zeros(pools, dtype=bool)
            ok[np.unique(node_pool[problem.allowed_nodes(j)])] = True
            keys[key] = ok
        eligible[j] = keys[key]
    demand = problem.demand
    rows = np.concatenate(
        [demand, problem.job_replicas[:, None], problem.replica_value[:, None], eligible.astype(np.int64)], axis=1
    )[waiting]
    groups, counts = _unique_rows(rows)
    prog = Program()
    use: dict[int, list[tuple[int, int, int, int]]] = {}
    for g, (row, count) in enumerate(zip(groups.tolist(), counts.tolist(), strict=True)):
        cpu, memory, milli, replicas, value = row[:5]
        total = count * replicas
        cols = []
        for m in np.flatnonzero(row[5:]).tolist():
            v = prog.var(f"y[{g},{m}]", 0, total)
            cols.append(v)
            use.setdefault(m, []).append((v, cpu, memory, milli))
            prog.add_term("primary", v, value)
        if len(cols) > 1:
            prog.row(f"count[{g}]", cols, [1] * len(cols), hi=total)
    for m, items in use.items():
        for r, name in enumerate(("cpu", "memory", "gpu")):
            cols = [v for v, *need in items if need[r]]
            if cols:
                prog.row(f"{name}[{m}]", cols, [need[r] for _, *need in items if need[r]], hi=int(cap[m, r]))
    prog.offsets["primary"] = kept
    run = highs.solve_lp(prog, {"primary": 1}, budget if budget is not None else Budget())
    if run.bound is None:
        return None
    return float(np.floor(run.bound + 1e-6))


def value_bound(problem: Problem) -> float | None:
    """Every job that waits placed whole, with what runs kept: the most the objective can reach, with no
    capacity considered (weaker than :func:`quick_bound`, which it bounds from above). For budgets that
    cannot afford that one's grouping: a few array reads, 0.08 s on 150,000 jobs whose arrays are not
    built yet against 0.17-0.24 s. None when a secondary weight is negative, as there."""
    settled, bound = _without_work(problem)
    if settled:
        return bound
    waiting, kept = _waiting_and_kept(problem)
    return float(int((problem.replica_value * problem.job_replicas)[waiting].sum()) + kept)


def _waiting_and_kept(problem: Problem) -> tuple[np.ndarray, int]:
    """bool per job: whether it waits (is not running); and the objective value of what runs, kept where
    it runs (the bounds' constant)."""
    waiting = np.ones(len(problem.jobs), dtype=bool)
    if problem.current is None or not problem.current.placements:
        return waiting, 0
    placed = problem.current.placements
    rows = np.fromiter(map(problem.job_index.__getitem__, map(attrgetter("job"), placed)), np.int64, len(placed))
    waiting[rows] = False
    return waiting, int(problem.replica_value[rows].sum())


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an integer matrix and how often each occurs (np.unique(axis=0) sorts row
    views as bytes, ten times slower than one lexsort of the columns)."""
    if not len(rows):
        return rows, np.zeros(0, dtype=np.int64)
    ordered = rows[np.lexsort(rows.T[::-1])]
    starts = np.concatenate([[0], np.flatnonzero((ordered[1:] != ordered[:-1]).any(axis=1)) + 1])
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def capacity_bound(comp: Compression, budget: Budget | None = None) -> float | None:
    """The pooled-capacity bound of the objective (None when a secondary weight is negative, which
    would let the secondary terms add value, or when the LP did not finish in the budget)."""
    problem = comp.problem
    w = problem.weights
    if not w.lexicographic and min(w.migration, w.fragmentation, w.spread) < 0:
        return None
    prog = _pooled_program(comp)
    run = highs.solve_lp(prog, {"primary": 1}, budget if budget is not None else Budget())
    if run.bound is None:
        return None
    return float(np.floor(run.bound + 1e-6))


def _pooled_program(comp: Compression) -> Program:
    """y[k, m]: replicas of class k on the pool of GPU model m (CPU-only nodes form a pool of their own).

    Each pool holds the free CPU, memory and milli-GPU of its nodes, summed; a class is eligible on a
    pool when it is eligible on one of the pool's node types. Fixed placements count as a constant.
    """
    problem = comp.problem
    prog = Program()
    pools: dict[int, list[int]] = defaultdict(list)  # model -> node types
    for t, nt in enumerate(comp.types):
        pools[nt.model if (nt.full_gpus or nt.partial) else -1].append(t)
    cap: dict[int, tuple[int, int, int]] = {}
    for m, ts in pools.items():
        types = [comp.types[t] for t in ts]
        cap[m] = (
            sum(nt.count * nt.cpu for nt in types),
            sum(nt.count * nt.memory for nt in types),
            sum(nt.count * (nt.full_gpus * MILLI + sum(free for free, _ in nt.partial)) for nt in types),
        )
    use: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)  # pool -> (var, cpu, memory, milli)
    for k, c in enumerate(comp.classes):
        total = c.count * c.replicas
        cols = []
        for m, ts in pools.items():
            if not comp.eligible[k, ts].any():
                continue
            v = prog.var(f"y[{k},{m}]", 0, total)
            cols.append(v)
            milli = c.gpus * MILLI if c.gpus else c.share
            use[m].append((v, c.cpu, c.memory, milli))
            prog.add_term("primary", v, c.value)
        if len(cols) > 1:
            prog.row(f"count[{k}]", cols, [1] * len(cols), hi=total)
    # (Classes of one elastic single-node job, one per size, each count the job: a looser, still valid bound.)
    for m, items in use.items():
        for r, name in enumerate(("cpu", "memory", "gpu")):
            cols = [v for v, *need in items if need[r]]
            if cols:
                prog.row(f"{name}[{m}]", cols, [need[r] for _, *need in items if need[r]], hi=cap[m][r])
    prog.offsets["primary"] = sum(int(problem.replica_value[problem.job_index[p.job]]) for p in comp.fixed.placements)
    return prog


__all__ = ["ProgramRun", "Status", "capacity_bound", "lp_bound", "relax"]
