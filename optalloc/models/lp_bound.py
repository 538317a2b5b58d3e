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

import numpy as np

from optalloc.core import MILLI, Problem, SolverError, Status
from optalloc.core.budget import Budget
from optalloc.core.options import SolveOptions
from optalloc.models import highs
from optalloc.models.classes import Compression, compress
from optalloc.models.program import Program
from optalloc.models.run import ProgramRun


def relax(prog: Program, weights: dict[str, int], budget: Budget | None = None, *, reserve: float = 0.0) -> ProgramRun:
    """Maximise the weighted objective over the LP relaxation; ``objective`` and ``bound`` are its value.

    Stops ``reserve`` seconds before ``budget``'s deadline with status ``unknown`` (no bound then).
    """
    return highs.solve_lp(prog, weights, budget if budget is not None else Budget(), reserve=reserve)


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
