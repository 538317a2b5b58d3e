"""MILP backend: the same Program through PuLP and CBC — the cross-check of CP-SAT, kept to its budget.

PuLP builds the model from the program's rows (an independent modelling layer, which is what makes it
a cross-check) and writes it as MPS; CBC runs as a child process that optalloc starts, watches and stops
itself: with its own time limit, then an interrupt (CBC stops its search and writes its best solution)
shortly before the budget's deadline, and a kill if it is still running at the deadline. The child's
output goes to a pipe, never to the host's stdout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
import warnings

import numpy as np
import pulp

from optalloc.core import MethodUnavailable, Status
from optalloc.core.budget import Budget
from optalloc.core.options import SolveOptions
from optalloc.models.program import INF, Program
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

SOLVERS = ("cbc",)

#: Seconds before the deadline at which a running CBC is interrupted, and then given to write its answer.
INTERRUPT_AHEAD = 0.15
GRACE = 0.1


def available(solver: str = "cbc") -> bool:
    return solver == "cbc" and "PULP_CBC_CMD" in pulp.listSolvers(onlyAvailable=True)


def _cbc(options: SolveOptions, time_limit: float) -> pulp.LpSolver:
    if not available("cbc"):
        raise MethodUnavailable("MILP solver 'cbc' is not available (PuLP's bundled CBC binary is missing)")
    # PuLP 3 deprecates its bundled CBC in favour of a separately installed one; we keep the bundled one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(
            msg=False, timeLimit=max(0.05, time_limit), gapRel=options.relative_gap, threads=options.num_workers
        )


def build_model(prog: Program, c: np.ndarray) -> tuple[pulp.LpProblem, list[pulp.LpVariable]]:
    model = pulp.LpProblem("optalloc", pulp.LpMaximize)
    with warnings.catch_warnings():
        # PuLP 3.3 warns about its own variable constructor (PuLP 4 migration notices).
        warnings.simplefilter("ignore", DeprecationWarning)
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
    budget: Budget,
    *,
    solver: str = "cbc",
    lexicographic: bool = False,
    reserve: float = 0.0,
) -> ProgramRun:
    """Maximise the weighted objective of ``prog`` with CBC, back ``reserve`` seconds before the deadline."""
    if solver != "cbc":
        raise MethodUnavailable(f"MILP solver {solver!r} is not available here (choose from {', '.join(SOLVERS)})")
    start = time.perf_counter()
    stages = [{"primary": 1}, {k: w for k, w in weights.items() if k != "primary"}] if lexicographic else [weights]
    values = None
    status = Status.UNKNOWN
    objective = None
    fixed_primary: tuple[np.ndarray, int] | None = None
    stats: dict[str, object] = {"variables": prog.num_vars, "constraints": prog.num_rows, "solver": solver}
    for stage, stage_weights in enumerate(stages):
        c, _ = prog.objective(stage_weights)
        model, xs = build_model(prog, c)
        if fixed_primary is not None:
            cp, best = fixed_primary
            nzp = np.flatnonzero(cp)
            model += pulp.LpAffineExpression([(xs[i], int(cp[i])) for i in nzp]) >= best
        left = budget.seconds(reserve=reserve)
        if left is not None and lexicographic and stage == 0:
            left *= 0.7
        if left is not None and left < 0.1:
            stats["message"] = "no time"
            break
        code = _solve_cbc(model, options, budget, reserve, left, stats)
        # sol_status: 1 optimal, 2 a solution (stopped early), 0 none, -1 infeasible, -2 unbounded.
        if code == pulp.LpSolutionInfeasible or model.status == pulp.LpStatusInfeasible:
            status = Status.INFEASIBLE
            values = None
            break
        if code not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            status = Status.UNKNOWN if values is None else status
            break
        found = np.array([round(v.value() or 0) for v in xs], dtype=np.int64)
        if prog.check(found):  # a numerically tolerant answer that breaks a row once rounded
            stats["message"] = "tolerance"
            break
        values = found
        status = Status.OPTIMAL if code == pulp.LpSolutionOptimal else Status.FEASIBLE
        objective = prog.value(values, {"primary": 1} if lexicographic else weights)
        if lexicographic and fixed_primary is None:
            cp, _ = prog.objective({"primary": 1})
            fixed_primary = (cp, int(cp @ values))
    bound = objective if status is Status.OPTIMAL and not options.relative_gap else None
    return ProgramRun(
        status=status,
        values=values,
        objective=None if objective is None else float(objective),
        bound=None if bound is None else float(bound),
        wall_time=time.perf_counter() - start,
        stats=stats,
    )


def _solve_cbc(
    model: pulp.LpProblem,
    options: SolveOptions,
    budget: Budget,
    reserve: float,
    time_limit: float | None,
    stats: dict[str, object],
) -> int:
    """Run CBC on ``model`` as a watched child process; returns PuLP's solution status."""
    cbc = _cbc(options, time_limit if time_limit is not None else 1e9)
    with tempfile.TemporaryDirectory(prefix="optalloc-cbc-") as folder:
        mps, sol = os.path.join(folder, "model.mps"), os.path.join(folder, "model.sol")
        vs, variables, constraints, _ = model.writeMPS(mps, rename=1)
        args = [cbc.path, mps, "-max", *"".join(f"-{o} " for o in cbc.options + cbc.getOptions()).split()]
        if time_limit is not None:
            args += ["-sec", f"{max(0.05, time_limit - INTERRUPT_AHEAD):.3f}"]
        args += ["-solve", "-printingOptions", "all", "-solution", sol]
        log.debug("running %s", " ".join(args))
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        interrupted = _wait(child, budget, reserve)
        stats["interrupted"] = interrupted
        if not os.path.exists(sol):
            model.assignStatus(pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound)
            return pulp.LpSolutionNoSolutionFound
        status, values, reduced, prices, slacks, sol_status = cbc.readsol_MPS(sol, model, vs, variables, constraints)
        model.assignVarsVals(values)
        model.assignStatus(status, sol_status)
        if interrupted and sol_status == pulp.LpSolutionOptimal:
            sol_status = pulp.LpSolutionIntegerFeasible  # stopped by us: not proven
        del reduced, prices, slacks
        return int(sol_status)


def _wait(child: subprocess.Popen[bytes], budget: Budget, reserve: float) -> bool:
    """Wait for CBC; interrupt it shortly before the deadline (or on stop), kill it at the deadline.
    Returns whether it had to be interrupted."""
    interrupted = False
    while True:
        left = budget.left() - reserve
        try:
            child.communicate(timeout=max(0.0, min(0.05, left - INTERRUPT_AHEAD)) if left < np.inf else 0.05)
            return interrupted
        except subprocess.TimeoutExpired:
            pass
        if budget.stopped or budget.left() - reserve <= INTERRUPT_AHEAD:
            break
    interrupted = True
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGINT)
    try:
        child.communicate(timeout=max(0.0, min(GRACE, budget.left() - reserve)))
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
    return interrupted
