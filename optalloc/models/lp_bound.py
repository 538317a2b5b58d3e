"""The LP relaxation of the Program (scipy's HiGHS): the ceiling every gap is measured against."""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from optalloc.core import Problem, SolverError, Status
from optalloc.core.options import SolveOptions
from optalloc.models.classes import compress
from optalloc.models.program import INF, Program
from optalloc.models.run import ProgramRun


def relax(prog: Program, weights: dict[str, int], *, time_limit: float | None = None) -> ProgramRun:
    """Maximise the weighted objective over the LP relaxation; ``objective`` and ``bound`` are its value."""
    start = time.perf_counter()
    c, offset = prog.objective(weights)
    if prog.num_vars == 0:
        return ProgramRun(Status.OPTIMAL, np.zeros(0), float(offset), float(offset), time.perf_counter() - start)
    constraints = []
    if prog.num_rows:
        lo = np.array(prog.row_lo, dtype=np.float64)
        hi = np.array(prog.row_hi, dtype=np.float64)
        lo[lo <= -INF] = -np.inf
        hi[hi >= INF] = np.inf
        constraints.append(LinearConstraint(prog.matrix(), lo, hi))
    options = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(
        -c.astype(np.float64),
        constraints=constraints,
        bounds=Bounds(np.array(prog.lb, dtype=np.float64), np.array(prog.ub, dtype=np.float64)),
        integrality=np.zeros(prog.num_vars),
        options=options,
    )
    if res.status == 2:
        return ProgramRun(Status.INFEASIBLE, None, None, None, time.perf_counter() - start)
    if res.x is None:
        if res.status == 1:
            return ProgramRun(Status.UNKNOWN, None, None, None, time.perf_counter() - start)
        raise SolverError(f"HiGHS LP failed: {res.message}")
    value = float(-res.fun) + offset
    return ProgramRun(
        Status.OPTIMAL,
        res.x,
        value,
        value,
        time.perf_counter() - start,
        stats={"lp_iterations": getattr(res, "mip_node_count", None)},
    )


def lp_bound(problem: Problem, options: SolveOptions | None = None) -> float:
    """The LP-relaxation bound of ``problem``'s objective (compressed program, nodes grouped)."""
    from optalloc.models.formulation import build

    opts = options or SolveOptions()
    form = build(compress(problem, allow_migration=opts.allow_migration))
    weights = {"primary": 1} if problem.weights.lexicographic else form.weights
    run = relax(form.program, weights, time_limit=opts.time_limit)
    if run.bound is None:
        raise SolverError(f"LP relaxation ended {run.status.value}")
    return run.bound
