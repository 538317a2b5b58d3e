"""CP-SAT backend: turns a Program into a CpModel and solves it under the caller's options."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from ortools.sat.python import cp_model

from optalloc.core import SolverError, Status
from optalloc.core.budget import Budget
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
    """Records when each improving solution was found (time to first solution, to a gap), and reports
    CP-SAT's proven bound to the budget as it tightens (``engine`` None: not reported)."""

    def __init__(self, offset: int, start: float, budget: Budget, engine: str | None) -> None:
        super().__init__()
        self.offset = offset
        self.start = start
        self.budget = budget
        self.engine = engine
        self.points: list[tuple[float, float, float]] = []

    def on_bound(self, bound: float) -> None:
        if self.engine is not None:
            self.budget.improve(self.engine, bound=float(np.floor(bound + self.offset + 1e-6)))

    def on_solution_callback(self) -> None:
        self.points.append(
            (
                time.perf_counter() - self.start,
                self.objective_value + self.offset,
                self.best_objective_bound + self.offset,
            )
        )


class _Model(cp_model.CpModel):
    """A CpModel without the camelCase aliases OR-Tools adds to every new model (about 9 ms a model: the
    neighbourhood search builds one per step)."""

    def _add_pre_pep8_methods(self) -> None:
        pass


def build_model(prog: Program) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    model = _Model()
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


#: Seconds per variable that building the CP-SAT model takes on an unloaded machine (hints included).
BUILD_PER_VAR = 25e-6


def solve_program(
    prog: Program,
    weights: dict[str, int],
    options: SolveOptions,
    budget: Budget,
    *,
    hint: np.ndarray | None = None,
    lexicographic: bool = False,
    reserve: float = 0.0,
    report_bound: bool = True,
) -> ProgramRun:
    """Maximise the weighted objective of ``prog`` with CP-SAT, returning ``reserve`` seconds before the
    budget's deadline at the latest (or soon after the caller's stop flag is set).

    ``lexicographic``: first the ``primary`` term alone, then the other terms with the primary held at
    its best value. ``report_bound``: report CP-SAT's proven bound to the budget's progress (off when the
    program's objective is not the problem's, e.g. with the fragmentation guide).
    """
    start = time.perf_counter()
    if (
        budget.limited
        and not options.deterministic  # a skip that follows the clock would not repeat
        and budget.left() - reserve <= 0.005 + BUILD_PER_VAR * prog.num_vars * budget.pace
    ):
        # Building the model cannot be interrupted: with no time to build it and search, do neither.
        stats = {"engine": "cpsat", "message": "no time to build the model"}
        return _or_hint(
            ProgramRun(Status.UNKNOWN, None, None, None, 0.0, stats=stats), prog, weights, hint, lexicographic
        )
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
        remaining = budget.seconds(reserve=reserve)
        # deterministic=True: the work limit is the budget's length, not what the wall clock has left
        # after the earlier stages (on a busy machine those take longer, and a smaller work limit would
        # change the answer); the wall clock still caps the search, and says so in the stats.
        work = budget.deadline - budget.start if options.deterministic and budget.limited else remaining
        if lexicographic and stage == 0 and remaining is not None and work is not None:
            remaining *= 0.7
            work *= 0.7
        if remaining is not None and remaining <= 0.005:
            break
        solver = _solver(options, remaining, work=work)
        bound_engine = "cpsat" if report_bound and (not lexicographic or stage == 0) else None
        progress = _Progress(offset, start, budget, bound_engine)
        if bound_engine is not None:
            solver.best_bound_callback = progress.on_bound
        with _watch(solver, budget):
            code = solver.solve(model, progress)
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
                # With deterministic=True, whether the wall-clock cap (not the work limit) ended the search:
                # then the answer may differ run to run.
                "wall_clock_stopped": bool(
                    options.deterministic
                    and work is not None
                    and solver.deterministic_time < 0.99 * work
                    and status is not Status.OPTIMAL
                ),
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
    if run is None:
        run = ProgramRun(Status.UNKNOWN, None, None, None, time.perf_counter() - start, stats={"message": "no time"})
    return _or_hint(run, prog, weights, hint, lexicographic)


def _or_hint(
    run: ProgramRun, prog: Program, weights: dict[str, int], hint: np.ndarray | None, lexicographic: bool
) -> ProgramRun:
    """``run``, or when it found nothing in time (presolve can eat a short budget), the warm start when
    it is feasible: its values, as a feasible answer."""
    if run.values is None and run.status is Status.UNKNOWN and hint is not None and not prog.check(hint):
        run.values = np.asarray(hint, dtype=np.int64)
        run.objective = float(prog.value(run.values, {"primary": 1} if lexicographic else weights))
        run.status = Status.FEASIBLE
        run.stats["solution"] = "hint"
    return run


class _watch:
    """Stop ``solver`` soon after the budget's stop flag is set; the watcher thread ends with the block."""

    POLL = 0.02

    def __init__(self, solver: cp_model.CpSolver, budget: Budget) -> None:
        self.solver = solver
        self.budget = budget
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _watch:
        if self.budget.stop is not None or self.budget.on_progress is not None:
            self.thread = threading.Thread(target=self._run, name="optalloc-cpsat-stop", daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.done.wait(self.POLL):
            if self.budget.stopped:
                self.solver.stop_search()
                return

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()


def _solver(options: SolveOptions, time_limit: float | None, *, work: float | None = None) -> cp_model.CpSolver:
    """A solver for one search: ``time_limit`` wall seconds; with ``options.deterministic``, ``work``
    deterministic seconds (default: ``time_limit``)."""
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = options.num_workers
    p.random_seed = options.seed
    # The host process keeps its signals: Ctrl-C is the caller's (stop the search with ``stop=``).
    p.catch_sigint_signal = False
    if options.relative_gap:
        p.relative_gap_limit = options.relative_gap
    if time_limit is not None:
        # The wall-clock limit always holds; with deterministic=True the work limit usually ends the
        # search first, which is what makes the answer the same run to run.
        p.max_time_in_seconds = time_limit
    if options.deterministic:
        p.interleave_search = options.num_workers > 1
        if work is not None or time_limit is not None:
            p.max_deterministic_time = work if work is not None else time_limit
    if time_limit is not None and time_limit < SHORT_BUDGET:
        # Short budgets: skip probing in presolve, which alone can take a second on large programs.
        p.cp_model_probing_level = 0
    if options.log_search:
        # The search log goes to this module's logger, never to the process's stdout.
        p.log_search_progress = True
        p.log_to_stdout = False
        solver.log_callback = _log_line
    return solver


def _log_line(line: str) -> None:
    log.info("cp-sat: %s", line)
