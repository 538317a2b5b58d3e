"""solve_exact: compress, build the program, solve it with a backend, decode, and report the gap."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Literal

import numpy as np

from optalloc.core import Allocation, ClusterState, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.options import SolveOptions
from optalloc.models.classes import compress
from optalloc.models.decode import decode
from optalloc.models.formulation import build, encode
from optalloc.models.future import add_future, future_value, held_back
from optalloc.models.guide import add_guide
from optalloc.models.lp_bound import relax
from optalloc.models.rounding import round_solution
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

Backend = Literal["cpsat", "cbc", "highs"]

#: Programs with at least this many variables get the rounded LP relaxation as a warm start.
LP_GUIDE_VARS = 2000

#: The LP warm start runs only with at least this many seconds left, and gets at most this share of them.
LP_GUIDE_MIN_TIME = 1.0
LP_GUIDE_SHARE = 0.5

#: Programs with at least this many variables are solved by CP-SAT and HiGHS side by side.
PORTFOLIO_VARS = 5000

#: Share of the time budget kept back for decoding the solver's answer into placements.
DECODE_RESERVE = 0.15

#: Up to this many nodes the program keeps one type per node, which makes it exact per node.
EXACT_NODE_LIMIT = 24


def solve_exact(
    problem: Problem,
    options: SolveOptions,
    *,
    backend: Backend = "cpsat",
    hint: Allocation | None = None,
    group_nodes: bool | None = None,
) -> Allocation:
    """The allocation found by an exact backend on the compressed program, with its bound and gap.

    ``group_nodes`` (default: only above ``EXACT_NODE_LIMIT`` nodes) groups identical nodes into types;
    the program is then a relaxation solved over counts and decoded node by node, and the answer is
    ``optimal`` only when decoding loses nothing. ``hint``: a heuristic allocation to start from.
    """
    start = time.perf_counter()
    group = len(problem.nodes) > EXACT_NODE_LIMIT if group_nodes is None else group_nodes
    comp = compress(problem, allow_migration=options.allow_migration, group_nodes=group)
    overloaded = _overloaded(comp)
    if overloaded:
        # What must stay where it runs no longer fits (a node shrank or was over-committed).
        method = {"cpsat": "cpsat", "cbc": "milp", "highs": "milp"}[backend]
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
    form = build(comp)
    lexicographic = problem.weights.lexicographic
    weights = {"primary": 1} if lexicographic else dict(form.weights)
    guided = options.fragmentation_guide > 0 and not lexicographic
    if guided:
        add_guide(form, options.fragmentation_guide)
    # Admission control: the capacity left is worth what the forecast demand could still place there.
    fv = None
    if options.admission_forecast > 0 and not lexicographic:
        fv = future_value(problem, ClusterState.of(problem, comp.fixed), options.admission_forecast)
        if fv is not None:
            add_future(form, fv)
            guided = True
    # Warm starts: the caller's heuristic answer, and (large programs) the rounded LP relaxation,
    # whose value is also a valid bound; CP-SAT starts from the better of the two.
    hints = [encode(form, hint)] if hint is not None else []
    lp_value = None
    left = None if options.time_limit is None else options.time_limit - (time.perf_counter() - start)
    if backend == "cpsat" and form.program.num_vars >= LP_GUIDE_VARS and (left is None or left > LP_GUIDE_MIN_TIME):
        lp = relax(form.program, weights, time_limit=None if left is None else LP_GUIDE_SHARE * left)
        if lp.values is not None:
            lp_value = lp.bound
            hints.append(round_solution(form, lp.values))
    hint_values = max(hints, key=lambda v: form.program.value(v, form.weights)) if hints else None
    prep = time.perf_counter() - start
    # The solver gets what is left of the budget but a reserve for decoding (about a tenth).
    remaining = None if options.time_limit is None else max(0.05, (options.time_limit - prep) * (1 - DECODE_RESERVE))
    run = _run_backend(backend, form, options, hint_values, lexicographic, remaining)
    method = {"cpsat": "cpsat", "cbc": "milp", "highs": "milp"}[backend]
    stats = {
        "backend": backend,
        **comp.describe(),
        **run.stats,
        "prepare_time": round(prep, 4),
        "lp_bound": lp_value,
        "hint_objective": None if hint_values is None else form.program.value(hint_values, weights),
        "program_objective": run.objective,
        "first_solution_time": None if run.first_solution_time is None else run.first_solution_time + prep,
        "progress": [(round(t + prep, 4), o, b) for t, o, b in run.progress],
    }
    if run.values is None:
        # No solution in time (or none exists): what is fixed stays, the rest is undecided.
        placements = comp.fixed.placements
        fixed = comp.fixed.placed_jobs
        reason = Reason.TIME_LIMIT if run.status is Status.UNKNOWN else Reason.INSUFFICIENT_CAPACITY
        unplaced = tuple(Unplaced(j.name, reason) for j in problem.jobs if j.name not in fixed)
        return Allocation(
            placements,
            unplaced,
            method=method,
            status=run.status,
            bound=run.bound,
            wall_time=time.perf_counter() - start,
            stats=stats,
        )
    decoded = decode(form, run.values, method=method, status=run.status)
    if fv is not None:
        decoded = replace(decoded, allocation=held_back(problem, decoded.allocation))
    value = evaluate(problem, decoded.allocation)
    objective = value.primary if lexicographic else value.total
    # With the guide on, CP-SAT's bound is on the guided objective: only the LP's is a valid bound.
    bound = None if guided else run.bound
    if lp_value is not None:
        bound = lp_value if bound is None else min(bound, lp_value)
    exact = run.status is Status.OPTIMAL and run.objective is not None and np.isclose(objective, run.objective)
    status = Status.OPTIMAL if exact or (bound is not None and np.isclose(objective, bound)) else Status.FEASIBLE
    stats["decode_lost_replicas"] = decoded.lost_replicas
    if fv is not None:
        stats["future_value"] = {
            "fresh_gpu": round(float(fv.values[0]), 1),
            "forecast_gpus": round(fv.forecast_milli / 1000, 1),
        }
        stats["held_back"] = sum(1 for u in decoded.allocation.unplaced if u.reason == Reason.HELD_BACK)
    return decoded.allocation.replace(
        status=status,
        objective=float(objective),
        bound=None if bound is None else float(max(bound, objective)),
        wall_time=time.perf_counter() - start,
        stats=stats,
    )


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


def _portfolio(form, options: SolveOptions, hint: np.ndarray | None, time_limit: float | None) -> ProgramRun:  # type: ignore[no-untyped-def]
    """CP-SAT and HiGHS side by side on one large program (one thread each); the better solution wins.

    HiGHS gets one core, CP-SAT the others (at least one); when HiGHS proves the optimum first, CP-SAT stops.
    """
    from optalloc.models import cpsat, highs

    done = threading.Event()
    box: dict[str, ProgramRun] = {}

    def run_highs() -> None:
        try:
            box["highs"] = highs.solve_program(
                form.program, form.weights, time_limit=time_limit, relative_gap=options.relative_gap
            )
        finally:
            if "highs" in box and box["highs"].status is Status.OPTIMAL:
                done.set()

    thread = threading.Thread(target=run_highs, daemon=True)
    thread.start()
    workers = max(1, options.num_workers - 1)
    run = cpsat.solve_program(
        form.program, form.weights, options.replace(workers=workers), hint=hint, time_limit=time_limit, stop=done
    )
    # HiGHS honours its limit loosely on a loaded machine; past a short grace its answer is not awaited.
    thread.join(None if time_limit is None else 0.1 * time_limit + 0.2)
    other = box.get("highs")
    run.stats["portfolio"] = {"cpsat": run.objective, "highs": None if other is None else other.objective}
    if (
        other is not None
        and other.values is not None
        and (run.objective is None or (other.objective or 0) > run.objective)
    ):
        other.stats = {**run.stats, **other.stats, "winner": "highs"}
        other.progress = run.progress
        other.first_solution_time = run.first_solution_time
        if run.bound is not None and (other.bound is None or run.bound < other.bound):
            other.bound = run.bound
        return other
    if other is not None and other.bound is not None and (run.bound is None or other.bound < run.bound):
        run.bound = max(other.bound, run.objective or other.bound)
    run.stats["winner"] = "cpsat"
    return run


def _run_backend(
    backend: Backend,
    form,  # type: ignore[no-untyped-def]
    options: SolveOptions,
    hint: np.ndarray | None,
    lexicographic: bool,
    time_limit: float | None,
) -> ProgramRun:
    if (
        backend == "cpsat"
        and not lexicographic
        and form.program.num_vars >= PORTFOLIO_VARS
        and options.num_workers >= 2
    ):
        return _portfolio(form, options, hint, time_limit)
    if backend == "cpsat":
        from optalloc.models import cpsat

        return cpsat.solve_program(
            form.program, form.weights, options, hint=hint, lexicographic=lexicographic, time_limit=time_limit
        )
    from optalloc.models import milp

    return milp.solve_program(
        form.program, form.weights, options, solver=backend, lexicographic=lexicographic, time_limit=time_limit
    )
