"""MILP backend: the same Program through PuLP, with CBC or HiGHS (highspy) — the cross-check of CP-SAT."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pulp

from optalloc.core import MethodUnavailable, Status
from optalloc.core.options import SolveOptions
from optalloc.models.program import INF, Program
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

SOLVERS = ("cbc", "highs")


def available(solver: str) -> bool:
    name = {"cbc": "PULP_CBC_CMD", "highs": "HiGHS"}.get(solver)
    return name is not None and name in pulp.listSolvers(onlyAvailable=True)


def _pulp_solver(solver: str, options: SolveOptions, time_limit: float | None) -> pulp.LpSolver:
    if not available(solver):
        raise MethodUnavailable(
            f"MILP solver {solver!r} is not available (choose from {', '.join(SOLVERS)}; HiGHS needs highspy)"
        )
    common = {"msg": options.log_search, "timeLimit": time_limit, "gapRel": options.relative_gap}
    threads = options.num_workers
    if solver == "cbc":
        # PuLP 3 deprecates its bundled CBC in favour of a separately installed one; we keep the bundled one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.PULP_CBC_CMD(threads=threads, **common)
    return pulp.HiGHS(threads=threads, random_seed=options.seed, **common)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence what a native solver writes straight to file descriptor 1 (HiGHS prints a banner)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def build_model(prog: Program, c: np.ndarray) -> tuple[pulp.LpProblem, list[pulp.LpVariable]]:
    model = pulp.LpProblem("optalloc", pulp.LpMaximize)
    xs = [
        pulp.LpVariable(f"v{i}", lowBound=lo, upBound=hi, cat=pulp.LpInteger)
        for i, (lo, hi) in enumerate(zip(prog.lb, prog.ub, strict=True))
    ]
    nz = np.flatnonzero(c)
    model += pulp.LpAffineExpression([(xs[i], int(c[i])) for i in nz])
    a = prog.matrix()
    for r in range(prog.num_rows):
        lo_i, hi_i = a.indptr[r], a.indptr[r + 1]
        expr = pulp.LpAffineExpression(
            [(xs[col], int(v)) for col, v in zip(a.indices[lo_i:hi_i], a.data[lo_i:hi_i], strict=True)]
        )
        lo, hi = prog.row_lo[r], prog.row_hi[r]
        if lo == hi:
            model += expr == lo
        else:
            if lo > -INF:
                model += expr >= lo
            if hi < INF:
                model += expr <= hi
    return model, xs


def solve_program(
    prog: Program,
    weights: dict[str, int],
    options: SolveOptions,
    *,
    solver: str = "cbc",
    lexicographic: bool = False,
    time_limit: float | None = None,
) -> ProgramRun:
    """Maximise the weighted objective of ``prog`` with PuLP and ``solver`` ("cbc" or "highs")."""
    start = time.perf_counter()
    limit = options.time_limit if time_limit is None else time_limit
    stages = [{"primary": 1}, {k: w for k, w in weights.items() if k != "primary"}] if lexicographic else [weights]
    values = None
    status = Status.UNKNOWN
    objective = None
    fixed_primary: tuple[np.ndarray, int] | None = None
    for stage_weights in stages:
        c, _ = prog.objective(stage_weights)
        with warnings.catch_warnings():
            # PuLP 3.3 warns about its own variable constructor (PuLP 4 migration notices).
            warnings.simplefilter("ignore", DeprecationWarning)
            model, xs = build_model(prog, c)
        if fixed_primary is not None:
            cp, best = fixed_primary
            nzp = np.flatnonzero(cp)
            model += pulp.LpAffineExpression([(xs[i], int(cp[i])) for i in nzp]) >= best
        remaining = None if limit is None else max(1.0, limit - (time.perf_counter() - start))
        with _quiet(not options.log_search):
            model.solve(_pulp_solver(solver, options, remaining))
        # sol_status: 1 optimal, 2 a solution (stopped early), 0 none, -1 infeasible, -2 unbounded.
        code = model.sol_status
        if code == pulp.LpSolutionInfeasible or model.status == pulp.LpStatusInfeasible:
            status = Status.INFEASIBLE
            values = None
            break
        if code not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            status = Status.UNKNOWN if values is None else status
            break
        values = np.array([round(v.value() or 0) for v in xs], dtype=np.int64)
        status = Status.OPTIMAL if code == pulp.LpSolutionOptimal else Status.FEASIBLE
        objective = prog.value(values, {"primary": 1} if lexicographic else weights)
        if lexicographic and fixed_primary is None:
            cp, _ = prog.objective({"primary": 1})
            fixed_primary = (cp, int(cp @ values))
    bound = objective if status is Status.OPTIMAL else None
    return ProgramRun(
        status=status,
        values=values,
        objective=None if objective is None else float(objective),
        bound=None if bound is None else float(bound),
        wall_time=time.perf_counter() - start,
        stats={"variables": prog.num_vars, "constraints": prog.num_rows, "solver": solver},
    )
