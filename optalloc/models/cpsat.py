"""CP-SAT backend: turns a Program into a CpModel and solves it under the caller's options."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from ortools.sat.python import cp_model

from optalloc.core import SolverError, Status
from optalloc.core.options import SolveOptions
from optalloc.models.program import INF, Program
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

#: Below this many seconds, presolve probing is turned off so that search starts early.
SHORT_BUDGET = 5.0

_STATUS = {
    cp_model.OPTIMAL: Status.OPTIMAL,
    cp_model.FEASIBLE: Status.FEASIBLE,
    cp_model.INFEASIBLE: Status.INFEASIBLE,
    cp_model.UNKNOWN: Status.UNKNOWN,
}


class _Progress(cp_model.CpSolverSolutionCallback):
    """Records when each improving solution was found (time to first solution, to a gap)."""

    def __init__(self, offset: int, start: float) -> None:
        super().__init__()
        self.offset = offset
        self.start = start
        self.points: list[tuple[float, float, float]] = []

    def on_solution_callback(self) -> None:
        self.points.append(
            (
                time.perf_counter() - self.start,
                self.objective_value + self.offset,
                self.best_objective_bound + self.offset,
            )
        )


def build_model(prog: Program) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    model = cp_model.CpModel()
    xs = [model.new_int_var(lo, hi, name) for lo, hi, name in zip(prog.lb, prog.ub, prog.names, strict=True)]
    a = prog.matrix()
    for r in range(prog.num_rows):
        lo_i, hi_i = a.indptr[r], a.indptr[r + 1]
        cols = a.indices[lo_i:hi_i]
        coefs = a.data[lo_i:hi_i].astype(np.int64)
        expr = cp_model.LinearExpr.weighted_sum([xs[c] for c in cols], [int(v) for v in coefs])
        lo, hi = prog.row_lo[r], prog.row_hi[r]
        if lo == hi:
            model.add(expr == lo)
        else:
            if lo > -INF:
                model.add(expr >= lo)
            if hi < INF:
                model.add(expr <= hi)
    return model, xs


def solve_program(
    prog: Program,
    weights: dict[str, int],
    options: SolveOptions,
    *,
    hint: np.ndarray | None = None,
    lexicographic: bool = False,
    time_limit: float | None = None,
    stop: threading.Event | None = None,
) -> ProgramRun:
    """Maximise the weighted objective of ``prog`` with CP-SAT.

    ``lexicographic``: first the ``primary`` term alone, then the other terms with the primary held at
    its best value. ``time_limit`` (seconds) overrides ``options.time_limit`` (the caller's remaining budget).
    """
    start = time.perf_counter()
    limit = options.time_limit if time_limit is None else time_limit
    model, xs = build_model(prog)
    build_time = time.perf_counter() - start
    if hint is not None:
        for v, value in zip(xs, hint, strict=True):
            model.add_hint(v, int(value))
    stages = [{"primary": 1}, {k: w for k, w in weights.items() if k != "primary"}] if lexicographic else [weights]
    run: ProgramRun | None = None
    for stage, stage_weights in enumerate(stages):
        c, offset = prog.objective(stage_weights)
        nz = np.flatnonzero(c)
        model.maximize(cp_model.LinearExpr.weighted_sum([xs[i] for i in nz], [int(c[i]) for i in nz]))
        remaining = None if limit is None else max(0.05, limit - (time.perf_counter() - start))
        if lexicographic and stage == 0 and remaining is not None:
            remaining *= 0.7
        solver = _solver(options, remaining)
        progress = _Progress(offset, start)
        watcher = _watch(solver, stop) if stop is not None else None
        code = solver.solve(model, progress)
        if watcher is not None:
            watcher.set()
        status = _STATUS.get(code)
        if status is None:
            raise SolverError(f"CP-SAT answered {solver.status_name(code)}: {solver.solution_info()}")
        values = np.array(solver.response_proto.solution, dtype=np.int64) if status.has_solution else None
        objective = solver.objective_value + offset if status.has_solution else None
        # Without a solution CP-SAT's bound may be a placeholder (0 when stopped before search): none then.
        bound = solver.best_objective_bound + offset if status.has_solution else None
        run = ProgramRun(
            status=status,
            values=values,
            objective=objective,
            bound=bound,
            wall_time=time.perf_counter() - start,
            first_solution_time=progress.points[0][0] if progress.points else None,
            progress=progress.points,
            stats={
                "variables": prog.num_vars,
                "constraints": prog.num_rows,
                "build_time": round(build_time, 4),
                "conflicts": solver.num_conflicts,
                "branches": solver.num_branches,
                "deterministic_time": solver.deterministic_time,
                "solution_info": solver.solution_info(),
                "workers": options.num_workers,
            },
        )
        if not lexicographic or values is None:
            break
        if stage == 0:
            # Hold the primary term at its best value, then optimise the rest from this solution.
            cp, cp_offset = prog.objective({"primary": 1})
            nzp = np.flatnonzero(cp)
            best = round(objective) - cp_offset if objective is not None else 0
            model.add(cp_model.LinearExpr.weighted_sum([xs[i] for i in nzp], [int(cp[i]) for i in nzp]) >= best)
            model.clear_hints()
            for v, value in zip(xs, values, strict=True):
                model.add_hint(v, int(value))
            primary_status, primary_bound = status, bound
        else:
            # Report the primary term's status, bound and the full value for the lexicographic mode.
            run.status = primary_status if primary_status is not Status.OPTIMAL else status
            run.bound = primary_bound
            run.objective = prog.value(values, {"primary": 1})
            run.stats["secondary_objective"] = solver.objective_value + offset
    assert run is not None
    if run.values is None and run.status is Status.UNKNOWN and hint is not None and not prog.check(hint):
        # No solution in time (presolve can eat a short budget): the warm start is feasible, return it.
        run.values = np.asarray(hint, dtype=np.int64)
        run.objective = float(prog.value(run.values, {"primary": 1} if lexicographic else weights))
        run.status = Status.FEASIBLE
        run.stats["solution"] = "hint"
    return run


def _watch(solver: cp_model.CpSolver, stop: threading.Event) -> threading.Event:
    """Stop ``solver`` as soon as ``stop`` is set (another engine proved the optimum); returns a done flag."""
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            if stop.wait(0.05):
                solver.stop_search()
                return

    threading.Thread(target=run, daemon=True).start()
    return done


def _solver(options: SolveOptions, time_limit: float | None) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = options.num_workers
    p.random_seed = options.seed
    if options.relative_gap:
        p.relative_gap_limit = options.relative_gap
    if options.deterministic:
        # Same answer run to run: interleaved workers and a deterministic (work-based) time limit.
        p.interleave_search = options.num_workers > 1
        if time_limit is not None:
            p.max_deterministic_time = time_limit
    elif time_limit is not None:
        p.max_time_in_seconds = time_limit
    if time_limit is not None and time_limit < SHORT_BUDGET:
        # Short budgets: skip probing in presolve, which alone can take a second on large programs.
        p.cp_model_probing_level = 0
    p.log_search_progress = options.log_search
    return solver
