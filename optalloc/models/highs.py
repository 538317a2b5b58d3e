"""HiGHS branch-and-bound on the Program through scipy (no modelling layer): the portfolio's second engine.

The compressed program is LP-heavy (counts, arc-flows): an LP-based MIP solver often closes it faster
than CP-SAT on large instances, while CP-SAT is stronger on small combinatorial ones. ``solve_exact``
runs both side by side on large programs and keeps the better solution.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from optalloc.core import Status
from optalloc.models.program import INF, Program
from optalloc.models.run import ProgramRun


def solve_program(
    prog: Program, weights: dict[str, int], *, time_limit: float | None, relative_gap: float = 0.0
) -> ProgramRun:
    """Maximise the weighted objective of ``prog`` with HiGHS (scipy.optimize.milp)."""
    start = time.perf_counter()
    c, offset = prog.objective(weights)
    if prog.num_vars == 0:
        return ProgramRun(Status.OPTIMAL, np.zeros(0, dtype=np.int64), float(offset), float(offset), 0.0)
    lo = np.array(prog.row_lo, dtype=np.float64)
    hi = np.array(prog.row_hi, dtype=np.float64)
    lo[lo <= -INF] = -np.inf
    hi[hi >= INF] = np.inf
    options: dict[str, object] = {"disp": False, "mip_rel_gap": max(relative_gap, 1e-6)}
    if time_limit is not None:
        options["time_limit"] = float(max(time_limit, 0.05))
    res = milp(
        -c.astype(np.float64),
        constraints=[LinearConstraint(prog.matrix(), lo, hi)] if prog.num_rows else [],
        bounds=Bounds(np.array(prog.lb, dtype=np.float64), np.array(prog.ub, dtype=np.float64)),
        integrality=np.ones(prog.num_vars),
        options=options,
    )
    wall = time.perf_counter() - start
    if res.x is None:
        status = Status.INFEASIBLE if res.status == 2 else Status.UNKNOWN
        return ProgramRun(status, None, None, None, wall, stats={"engine": "highs", "message": res.message})
    values = np.round(res.x).astype(np.int64)
    if prog.check(values):  # rounding of a numerically tolerant answer broke a row: do not use it
        return ProgramRun(Status.UNKNOWN, None, None, None, wall, stats={"engine": "highs", "message": "tolerance"})
    objective = float(prog.value(values, weights))
    bound = getattr(res, "mip_dual_bound", None)
    bound = None if bound is None or not np.isfinite(bound) else float(-bound) + offset
    status = Status.OPTIMAL if res.status == 0 else Status.FEASIBLE
    return ProgramRun(status, values, objective, bound, wall, first_solution_time=wall, stats={"engine": "highs"})
