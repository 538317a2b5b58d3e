"""solve_exact: compress, bound, build the program, solve it with a backend, decode — all within a budget.

The stages, each skipped when the budget cannot hold it (the answer then is the best one so far):

1. compress the problem (node types, job classes) and report the pooled-capacity bound (milliseconds);
2. build the program, solve its LP relaxation (the bound every gap is measured against) and round it:
   a warm start, decoded at once into an answer when it beats the caller's hint;
3. solve the program with the backend (CP-SAT, HiGHS or CBC), hinted with the best warm start, until
   the time needed to decode what it finds;
4. decode the backend's solution if its program value beats the warm start's.

Status is honest: ``optimal`` only when the answer's objective reaches a proven bound (a solver that
stops at a gap limit, or whose answer decoding lost a replica, is ``feasible``).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Literal

import numpy as np

from optalloc.core import Allocation, ClusterState, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions
from optalloc.models.classes import Compression, compress
from optalloc.models.decode import decode
from optalloc.models.formulation import Formulation, build, encode
from optalloc.models.future import add_future, future_value, held_back
from optalloc.models.guide import add_guide
from optalloc.models.lp_bound import capacity_bound, relax
from optalloc.models.program import Program
from optalloc.models.rounding import round_solution
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

Backend = Literal["cpsat", "cbc", "highs"]

#: Up to this many nodes the program keeps one type per node, which makes it exact per node.
EXACT_NODE_LIMIT = 24

#: Time kept back for decoding the backend's answer: this multiple of what decoding the warm start took,
#: plus ``DECODE_FLOOR`` seconds (and at least ``DECODE_SHARE`` of the time left when nothing was decoded).
DECODE_FACTOR = 1.5
DECODE_FLOOR = 0.02
DECODE_SHARE = 0.15

METHOD = {"cpsat": "cpsat", "cbc": "milp", "highs": "milp"}


def solve_exact(
    problem: Problem,
    options: SolveOptions,
    budget: Budget | None = None,
    *,
    backend: Backend = "cpsat",
    hint: Allocation | None = None,
    group_nodes: bool | None = None,
    reserve: float = 0.0,
) -> Allocation:
    """The allocation found by an exact backend on the compressed program, with its bound and gap.

    ``budget`` (default: ``options.time_limit`` from now): the answer comes back ``reserve`` seconds
    before its deadline at the latest. ``group_nodes`` (default: only above ``EXACT_NODE_LIMIT`` nodes)
    groups identical nodes into types; the program is then a relaxation solved over counts and decoded
    node by node, and the answer is ``optimal`` only when it reaches the bound. ``hint``: a heuristic
    allocation to start from.
    """
    budget = budget if budget is not None else Budget(options.time_limit)
    start = time.perf_counter()
    method = METHOD[backend]
    stats: dict = {"backend": backend}
    group = len(problem.nodes) > EXACT_NODE_LIMIT if group_nodes is None else group_nodes
    comp = compress(problem, allow_migration=options.allow_migration, group_nodes=group)
    stats.update(comp.describe())
    overloaded = _overloaded(comp)
    if overloaded:
        # What must stay where it runs no longer fits (a node shrank or was over-committed).
        unplaced = tuple(
            Unplaced(j.name, Reason.INSUFFICIENT_CAPACITY, "fixed jobs overload their nodes")
            for j in problem.jobs
            if j.name not in comp.fixed.placed_jobs
        )
        return Allocation(
            comp.fixed.placements,
            unplaced,
            method=method,
            status=Status.INFEASIBLE,
            wall_time=time.perf_counter() - start,
            stats={"overloaded_nodes": overloaded},
        )
    lexicographic = problem.weights.lexicographic
    bounds: dict[str, float] = {}
    best: _Candidate | None = None
    try:
        budget.check(reserve)
        quick = capacity_bound(comp, budget)
        if quick is not None:
            bounds["capacity"] = quick
            budget.improve("capacity", bound=quick)
        budget.check(reserve)
        form = build(comp)
        weights = {"primary": 1} if lexicographic else dict(form.weights)
        guided = _shape(form, problem, comp, options, stats)
        stats["variables"], stats["constraints"] = form.program.num_vars, form.program.num_rows
        hints: list[np.ndarray] = [encode(form, hint)] if hint is not None else []
        budget.check(reserve)
        lp = relax(form.program, weights, budget, reserve=reserve)
        stats["lp_time"] = round(lp.wall_time, 4)
        if lp.bound is not None:
            bounds["lp"] = float(np.floor(lp.bound + 1e-6))
            budget.improve("lp", bound=bounds["lp"])
        if lp.values is not None:
            hints.append(round_solution(form, lp.values))
        warm = max(hints, key=lambda v: form.program.value(v, form.weights)) if hints else None
        stats["hint_objective"] = None if warm is None else form.program.value(warm, weights)
        decode_time = None
        if warm is not None and (hint is None or warm is not hints[0]):
            # The rounded LP beats the caller's hint: decode it now, an answer in hand before the search.
            t0 = time.perf_counter()
            best = _decode(form, warm, method, Status.FEASIBLE, problem, budget, reserve, "lp-rounding", options)
            decode_time = time.perf_counter() - t0
        stats["prepare_time"] = round(time.perf_counter() - start, 4)
        # The backend stops in time to decode what it finds (as long as decoding the warm start took).
        keep = (
            reserve
            + DECODE_FLOOR
            + (
                DECODE_FACTOR * decode_time
                if decode_time is not None
                else DECODE_SHARE * max(0.0, budget.left() - reserve)
            )
        )
        run = _run_backend(backend, form, options, budget, warm, lexicographic, keep, report_bound=not guided)
        stats.update(_run_stats(run, stats["prepare_time"]))
        if run.bound is not None and not guided:
            bounds[backend] = float(np.floor(run.bound + 1e-6))
        if run.values is not None and (best is None or run.objective is None or run.objective > best.program_value):
            found = _decode(form, run.values, method, run.status, problem, budget, reserve, backend, options)
            if best is None or found.objective > best.objective:
                best = found
    except OutOfTime:
        stats["out_of_time"] = True
    stats["bounds"] = dict(bounds)
    bound = min(bounds.values()) if bounds else None
    if best is None:
        # Nothing decided in time (or no solution exists): what is fixed stays, the rest is undecided.
        fixed = comp.fixed.placed_jobs
        return Allocation(
            comp.fixed.placements,
            tuple(Unplaced(j.name, Reason.TIME_LIMIT) for j in problem.jobs if j.name not in fixed),
            method=method,
            status=Status.UNKNOWN,
            bound=bound,
            wall_time=time.perf_counter() - start,
            stats=stats,
        )
    stats.update(best.stats)
    objective = best.objective
    status = Status.OPTIMAL if bound is not None and objective >= bound else Status.FEASIBLE
    budget.improve(method, objective=objective)
    return best.allocation.replace(
        status=status,
        objective=float(objective),
        bound=None if bound is None else float(max(bound, objective)),
        wall_time=time.perf_counter() - start,
        stats=stats,
    )


class _Candidate:
    """A decoded answer: the allocation, its exact objective, the program value it was decoded from."""

    def __init__(self, allocation: Allocation, objective: float, program_value: float, stats: dict) -> None:
        self.allocation = allocation
        self.objective = objective
        self.program_value = program_value
        self.stats = stats


def _decode(
    form: Formulation,
    values: np.ndarray,
    method: str,
    status: Status,
    problem: Problem,
    budget: Budget,
    reserve: float,
    source: str,
    options: SolveOptions,
) -> _Candidate:
    decoded = decode(form, values, method=method, status=status, budget=budget, reserve=reserve)
    allocation = decoded.allocation
    if form.weights.get("future"):
        allocation = held_back(problem, allocation)
    value = evaluate(problem, allocation)
    objective = float(value.primary if problem.weights.lexicographic else value.total)
    stats = {"decoded_from": source, "decode_lost_replicas": decoded.lost_replicas}
    if form.weights.get("future"):
        stats["held_back"] = sum(1 for u in allocation.unplaced if u.reason == Reason.HELD_BACK)
    weights = {"primary": 1} if problem.weights.lexicographic else form.weights
    return _Candidate(allocation, objective, float(form.program.value(values, weights)), stats)


def _shape(form: Formulation, problem: Problem, comp: Compression, options: SolveOptions, stats: dict) -> bool:
    """Add the search guides the options ask for; whether the program's objective is then not the problem's."""
    if problem.weights.lexicographic:
        return False
    guided = False
    if options.fragmentation_guide > 0:
        add_guide(form, options.fragmentation_guide)
        guided = True
    # Admission control: the capacity left is worth what the forecast demand could still place there.
    if options.admission_forecast > 0:
        fv = future_value(problem, ClusterState.of(problem, comp.fixed), options.admission_forecast)
        if fv is not None:
            add_future(form, fv)
            stats["future_value"] = {
                "fresh_gpu": round(float(fv.values[0]), 1),
                "forecast_gpus": round(fv.forecast_milli / 1000, 1),
            }
            guided = True
    return guided


def _run_stats(run: ProgramRun, prep: float) -> dict:
    return {
        **run.stats,
        "program_objective": run.objective,
        "program_status": run.status.value,
        "first_solution_time": None if run.first_solution_time is None else run.first_solution_time + prep,
        "progress": [(round(t + prep, 4), o, b) for t, o, b in run.progress],
    }


def _overloaded(comp) -> list[str]:  # type: ignore[no-untyped-def]
    """Nodes whose fixed placements exceed their capacity in some resource."""
    from optalloc.core import ClusterState

    state = ClusterState.of(comp.problem, comp.fixed)
    bad = (
        (state.cpu < 0)
        | (state.memory < 0)
        | (state.gpu.min(axis=1, initial=0) < -1)
        | (state.gpu_mem.min(axis=1, initial=0) < 0)
    )
    return [comp.problem.nodes[n].name for n in np.flatnonzero(bad)]


def _run_backend(
    backend: Backend,
    form: Formulation,
    options: SolveOptions,
    budget: Budget,
    hint: np.ndarray | None,
    lexicographic: bool,
    reserve: float,
    *,
    report_bound: bool,
) -> ProgramRun:
    weights = form.weights
    if backend == "cpsat":
        from optalloc.models import cpsat

        return cpsat.solve_program(
            form.program,
            weights,
            options,
            budget,
            hint=hint,
            lexicographic=lexicographic,
            reserve=reserve,
            report_bound=report_bound,
        )
    if backend == "highs":
        from optalloc.models import highs

        def run(prog: Program, stage_weights: dict[str, int], stage_hint: np.ndarray | None, keep: float) -> ProgramRun:
            return highs.solve_program(
                prog,
                stage_weights,
                budget,
                hint=stage_hint,
                relative_gap=options.relative_gap,
                threads=options.num_workers,
                seed=options.seed,
                reserve=keep,
                report_bound=report_bound,
            )

        if not lexicographic:
            return run(form.program, weights, hint, reserve)
        # Lexicographic: the primary term first, then the rest with the primary held at its best value.
        first = run(
            form.program,
            {"primary": 1},
            hint,
            reserve + 0.3 * budget.seconds(reserve=reserve) if budget.limited else reserve,
        )
        if first.values is None:
            return first
        held = copy.deepcopy(form.program)
        cp, offset = held.objective({"primary": 1})
        nz = np.flatnonzero(cp)
        held.row("primary_held", nz.tolist(), cp[nz].tolist(), lo=round(first.objective or 0) - offset)
        second = run(held, {k: w for k, w in weights.items() if k != "primary"}, first.values, reserve)
        values = second.values if second.values is not None else first.values
        return ProgramRun(
            status=first.status if first.status is not Status.OPTIMAL else second.status,
            values=values,
            objective=float(form.program.value(values, {"primary": 1})),
            bound=first.bound,
            wall_time=first.wall_time + second.wall_time,
            stats={**first.stats, "secondary": second.stats.get("message")},
        )
    from optalloc.models import milp

    return milp.solve_program(
        form.program, weights, options, budget, solver=backend, lexicographic=lexicographic, reserve=reserve
    )
