"""HiGHS on the Program through highspy's core API: the LP relaxation and branch-and-bound.

Why the core API (``highspy._core._Highs``) rather than a modelling layer: the program goes in as
arrays in one call; HiGHS's interrupt callbacks stop a solve within milliseconds of the budget's
deadline or the caller's stop flag (its own time limit is loose during presolve and the root LP); the
improving-solution callback reports the incumbent and the dual bound as they come; and the core prints
nothing (the Python wrapper prints a banner on its first construction).

The compressed program is LP-heavy (counts, arc-flows): its LP relaxation is the bound that gaps are
measured against, and its rounding a warm start for CP-SAT.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import time
import traceback
from collections.abc import Callable

import numpy as np

from optalloc.core import SolverError, Status
from optalloc.core.budget import Budget
from optalloc.models.forked import CHILD_GRACE, child_setup, reap
from optalloc.models.program import INF, Program
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

#: LP relaxations with at least this many variables are solved by interior point, smaller ones by simplex.
IPM_VARS = 5000

#: Seconds kept free before the deadline: HiGHS checks its interrupt callbacks often, not continuously.
MARGIN = 0.01


def _no_answer() -> frozenset:  # type: ignore[type-arg]
    import highspy._core as hc

    s = hc.HighsModelStatus
    return frozenset({s.kNotset, s.kLoadError, s.kModelError, s.kPresolveError, s.kSolveError, s.kPostsolveError})


def available() -> bool:
    try:
        import highspy._core  # noqa: F401
    except ImportError:
        return False
    return True


def solve_lp(
    prog: Program,
    weights: dict[str, int],
    budget: Budget,
    *,
    reserve: float = 0.0,
    solver: str | None = None,
    presolve: bool = False,
) -> ProgramRun:
    """Maximise the weighted objective over the LP relaxation.

    ``objective`` and ``bound`` are the LP value; ``values`` a vertex solution. ``solver``: "ipm"
    (interior point, then crossover) or "simplex"; by default interior point from ``IPM_VARS``
    variables. ``presolve`` is off by default: its chains of substitutions along the arc-flows take
    seconds on programs that simplex solves in milliseconds. Different settings reach different optimal
    vertices of the same LP, which decode differently (``solve_exact`` tries more than one when it has
    time). Stops ``reserve`` seconds before the budget's deadline with status ``unknown`` and no values.
    """
    if solver is None:
        solver = "ipm" if prog.num_vars >= IPM_VARS else "simplex"
    return _run(prog, weights, budget, integer=False, reserve=reserve, lp_solver=solver, presolve=presolve)


def solve_program(
    prog: Program,
    weights: dict[str, int],
    budget: Budget,
    *,
    hint: np.ndarray | None = None,
    relative_gap: float = 0.0,
    threads: int = 1,
    seed: int = 0,
    reserve: float = 0.0,
    report_bound: bool = True,
) -> ProgramRun:
    """Maximise the weighted objective of ``prog`` with HiGHS branch-and-bound (``hint``: a feasible
    start). Returns at the latest ``reserve`` seconds before the budget's deadline.

    With a deadline, the search runs in a child process that is stopped at the deadline: HiGHS's
    interrupt callbacks are not called during some phases (presolve, the root LP, repairing a start),
    which on the 10k-node programs last tens of seconds. Its answer and bound come back when it ends.
    """

    def search(child_budget: Budget) -> ProgramRun:
        return _run(
            prog,
            weights,
            child_budget,
            integer=True,
            hint=hint,
            relative_gap=relative_gap,
            threads=threads,
            seed=seed,
            reserve=0.0,
            report_bound=False,
        )

    if not budget.limited:
        return search(budget)
    run = in_child(search, budget, reserve)
    if report_bound and run.bound is not None:
        budget.improve("highs", bound=run.bound)
    return run


def in_child(search: Callable[[Budget], ProgramRun], budget: Budget, reserve: float) -> ProgramRun:
    """``search(budget)`` in a forked child process, ended ``reserve`` seconds before the deadline (or
    when the caller sets stop): its answer when it finished, else ``unknown`` with no values.

    A plain ``os.fork`` with a pipe rather than ``multiprocessing``: a caller may itself be a daemonic
    worker of a ``multiprocessing.Pool``, which ``multiprocessing`` forbids to have children. An
    exception in the child is raised here as a :class:`SolverError` carrying its traceback.
    """
    return Child(search, budget, reserve).collect(reserve)


def lp_in_child(
    prog: Program,
    weights: dict[str, int],
    budget: Budget,
    *,
    reserve: float = 0.0,
    solver: str | None = None,
    presolve: bool = False,
) -> Child:
    """:func:`solve_lp` started in a child process, to run beside the caller's own work on another CPU;
    :meth:`Child.collect` gives its answer."""

    def search(child_budget: Budget) -> ProgramRun:
        return solve_lp(prog, weights, child_budget, solver=solver, presolve=presolve)

    return Child(search, budget, reserve)


class Child:
    """A search running in a forked child process (see :func:`in_child`) until it ends, ``reserve``
    seconds before the budget's deadline, or :meth:`cancel`."""

    def __init__(self, search: Callable[[Budget], ProgramRun], budget: Budget, reserve: float) -> None:
        self.budget = budget
        self.start = time.perf_counter()
        self.pid: int | None = None
        limit = budget.seconds(reserve=reserve + CHILD_GRACE)
        if limit is not None and limit <= 0.01:
            return
        self.read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer through the pipe, then leave without running the parent's exit hooks
            code = 1
            try:
                os.close(self.read_end)
                child_setup()
                try:
                    message: tuple[bool, object] = (True, search(Budget(limit)))
                except BaseException:  # carried to the parent, which raises it
                    message = (False, traceback.format_exc())
                with os.fdopen(write_end, "wb") as out:
                    out.write(pickle.dumps(message))
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid = pid

    def collect(self, reserve: float) -> ProgramRun:
        """Wait for the answer until ``reserve`` seconds before the deadline; end the child either way."""
        if self.pid is None:
            return ProgramRun(Status.UNKNOWN, None, None, None, 0.0, stats={"engine": "highs", "message": "no time"})
        chunks: list[bytes] = []
        ended = False
        try:
            while True:
                left = self.budget.left() - reserve - CHILD_GRACE
                if left <= 0:
                    break
                ready, _, _ = select.select([self.read_end], [], [], min(0.02, max(0.0, left)))
                if ready:
                    chunk = os.read(self.read_end, 1 << 20)
                    if not chunk:
                        ended = True  # the child closed the pipe: it is done
                        break
                    chunks.append(chunk)
        finally:
            finished = self._end(wait=ended)
        if not (ended and finished):
            stats = {"engine": "highs", "message": "stopped at the deadline"}
            return ProgramRun(Status.UNKNOWN, None, None, None, time.perf_counter() - self.start, stats=stats)
        ok, payload = pickle.loads(b"".join(chunks))
        if not ok:
            raise SolverError(f"HiGHS failed in its child process:\n{payload}")
        assert isinstance(payload, ProgramRun)
        return payload

    def cancel(self) -> None:
        """End the child now if it still runs (nothing is left running after a solve returns)."""
        if self.pid is not None:
            self._end(wait=False)

    def _end(self, *, wait: bool) -> bool:
        pid, self.pid = self.pid, None
        os.close(self.read_end)
        assert pid is not None
        return reap(pid, wait=wait)


def _run(
    prog: Program,
    weights: dict[str, int],
    budget: Budget,
    *,
    integer: bool,
    hint: np.ndarray | None = None,
    relative_gap: float = 0.0,
    threads: int = 1,
    seed: int = 0,
    reserve: float = 0.0,
    report_bound: bool = True,
    lp_solver: str = "simplex",
    presolve: bool = False,
) -> ProgramRun:
    import highspy._core as hc
    from highspy._core import cb

    start = time.perf_counter()
    c, offset = prog.objective(weights)
    if prog.num_vars == 0:
        return ProgramRun(Status.OPTIMAL, np.zeros(0, dtype=np.int64), float(offset), float(offset), 0.0)
    limit = budget.seconds(reserve=reserve + MARGIN)
    if limit is not None and limit <= 0:
        return ProgramRun(Status.UNKNOWN, None, None, None, 0.0, stats={"engine": "highs", "message": "no time"})
    h = hc._Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("random_seed", int(seed) % (2**31))
    # (No "threads" option: HiGHS fixes its thread pool once per process, and a different value later fails.)
    del threads
    if limit is not None:
        h.setOptionValue("time_limit", float(limit))
    if integer:
        h.setOptionValue("mip_rel_gap", max(relative_gap, 1e-9))
    else:
        h.setOptionValue("presolve", "on" if presolve else "off")
        h.setOptionValue("solver", lp_solver)
    h.passModel(_lp(hc, prog, c, integer))
    if hint is not None and integer:
        solution = hc.HighsSolution()
        solution.col_value = np.asarray(hint, dtype=np.float64)
        solution.value_valid = True
        h.setSolution(solution)
    deadline = budget.clock() + (limit if limit is not None else np.inf)
    progress: list[tuple[float, float, float]] = []

    def callback(kind, message, out, into, data) -> None:  # type: ignore[no-untyped-def]
        if kind == cb.HighsCallbackType.kCallbackMipImprovingSolution:
            objective = -out.objective_function_value + offset
            bound = -out.mip_dual_bound + offset
            progress.append((time.perf_counter() - start, objective, bound))
            if report_bound and np.isfinite(bound):
                budget.improve("highs", bound=np.floor(bound + 1e-6))
        if into is not None and (budget.stopped or budget.clock() >= deadline):
            into.user_interrupt = True

    h.setCallback(callback, None)
    kinds = [cb.HighsCallbackType.kCallbackSimplexInterrupt, cb.HighsCallbackType.kCallbackIpmInterrupt]
    if integer:
        kinds += [cb.HighsCallbackType.kCallbackMipInterrupt, cb.HighsCallbackType.kCallbackMipImprovingSolution]
    for kind in kinds:
        h.startCallback(kind)
    no_answer = _no_answer()
    code = h.run()
    wall = time.perf_counter() - start
    model_status = h.getModelStatus()
    info = h.getInfo()
    stats: dict[str, object] = {"engine": "highs", "message": h.modelStatusToString(model_status)}
    if code == hc.HighsStatus.kError or model_status in no_answer:
        # Stopped on purpose (the caller's stop flag, the deadline), no answer is the expected outcome.
        stopped = budget.stopped or budget.clock() >= deadline
        (log.debug if stopped else log.warning)("HiGHS ended without an answer: %s", stats["message"])
        return ProgramRun(Status.UNKNOWN, None, None, None, wall, stats=stats)
    if model_status == hc.HighsModelStatus.kInfeasible:
        return ProgramRun(Status.INFEASIBLE, None, None, None, wall, stats=stats)
    solution = h.getSolution()
    has_values = (
        info.primal_solution_status == hc.SolutionStatus.kSolutionStatusFeasible
        and len(solution.col_value) == prog.num_vars
    )
    if not integer:
        if model_status != hc.HighsModelStatus.kOptimal or not has_values:
            return ProgramRun(Status.UNKNOWN, None, None, None, wall, stats=stats)
        value = -info.objective_function_value + offset
        stats["iterations"] = info.ipm_iteration_count
        return ProgramRun(Status.OPTIMAL, np.asarray(solution.col_value), value, value, wall, stats=stats)
    bound = -info.mip_dual_bound + offset if np.isfinite(info.mip_dual_bound) else None
    if not has_values:
        return ProgramRun(Status.UNKNOWN, None, None, bound, wall, progress=progress, stats=stats)
    values = np.round(np.asarray(solution.col_value)).astype(np.int64)
    if prog.check(values):  # rounding a numerically tolerant answer broke a row: do not use it
        return ProgramRun(Status.UNKNOWN, None, None, bound, wall, stats={**stats, "message": "tolerance"})
    objective = float(prog.value(values, weights))
    status = Status.OPTIMAL if model_status == hc.HighsModelStatus.kOptimal else Status.FEASIBLE
    return ProgramRun(
        status,
        values,
        objective,
        None if bound is None else float(np.floor(bound + 1e-6)),
        wall,
        first_solution_time=progress[0][0] if progress else wall,
        progress=progress,
        stats={**stats, "nodes": info.mip_node_count},
    )


def _lp(hc, prog: Program, c: np.ndarray, integer: bool):  # type: ignore[no-untyped-def]
    """The program as a HighsLp (minimising -c . x), column-wise."""
    a = prog.matrix().tocsc()
    lo = np.array(prog.row_lo, dtype=np.float64)
    hi = np.array(prog.row_hi, dtype=np.float64)
    lo[lo <= -INF] = -hc.kHighsInf
    hi[hi >= INF] = hc.kHighsInf
    lp = hc.HighsLp()
    lp.num_col_ = prog.num_vars
    lp.num_row_ = prog.num_rows
    lp.col_cost_ = -c.astype(np.float64)
    lp.col_lower_ = np.asarray(prog.lb, dtype=np.float64)
    lp.col_upper_ = np.asarray(prog.ub, dtype=np.float64)
    lp.row_lower_ = lo
    lp.row_upper_ = hi
    lp.a_matrix_.format_ = hc.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    if integer:
        lp.integrality_ = [hc.HighsVarType.kInteger] * prog.num_vars
    return lp
