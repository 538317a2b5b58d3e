"""solve_exact: compress, bound, build the program, solve it with a backend, decode — all within a budget.

The stages, each skipped when the budget cannot hold it (the answer then is the best one so far):

1. compress the problem (node types, job classes) and report the pooled-capacity bound (milliseconds);
2. build the program, solve its LP relaxation (the bound every gap is measured against) and round it:
   a warm start, decoded at once into an answer; on large programs over node types, a second optimal
   vertex (simplex, solved beside in a child process when a CPU is free) is rounded and decoded too;
3. solve the program with the backend (CP-SAT, HiGHS or CBC), hinted with the best warm start, until
   the time needed to decode what it finds;
4. decode the backend's solution, and polish the best answer with the time left.

Status is honest: ``optimal`` only when the answer's objective reaches a proven bound (a solver that
stops at a gap limit, or whose answer decoding lost a replica, is ``feasible``).

Why this module is one piece: the stages above are one pipeline over one budget, sharing the program
being prepared (:class:`Prepared`), the answers decoded so far (``_Search``) and the rules for when a
child process may run (:func:`_second_cpu`); the stages' own work lives in the modules it imports.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from optalloc.core import Allocation, ClusterState, Problem, Reason, Status, Unplaced, evaluate, usable_cpus
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions
from optalloc.models.classes import Compression, compress
from optalloc.models.decode import Decoding
from optalloc.models.decode import start as start_decoding
from optalloc.models.formulation import Formulation, build, encode
from optalloc.models.future import add_future, future_value, held_back
from optalloc.models.guide import add_guide
from optalloc.models.highs import Child, lp_in_child
from optalloc.models.lp_bound import capacity_bound, relax
from optalloc.models.program import Program
from optalloc.models.rounding import round_solution
from optalloc.models.run import ProgramRun

log = logging.getLogger(__name__)

Backend = Literal["cpsat", "cbc", "highs"]

#: Up to this many nodes the program keeps one type per node, which makes it exact per node.
EXACT_NODE_LIMIT = 24

#: Grouped programs with at least this many variables try a second LP vertex when there is time.
SECOND_VERTEX_VARS = 2000

#: Time kept back for decoding the backend's answer: this multiple of what decoding the warm start took,
#: plus ``DECODE_FLOOR`` seconds (and at least ``DECODE_SHARE`` of the time left when nothing was decoded).
DECODE_FACTOR = 1.5
DECODE_FLOOR = 0.02
DECODE_SHARE = 0.15
#: Seconds per job that decoding an answer of the program and its repair take, unloaded, before the first
#: decode measures it: 16-18 us on the openb default list and openb_like at 3,000-20,000 nodes (8,152 to
#: 150,000 jobs), up to 21-25 us on a slower day (0.2 s on the default list, 1.5 s at 10,000 nodes).
DECODE_PER_JOB = 20e-6

#: Up to this pace (how much slower than unloaded the simple rules ran: see Budget.pace), the second LP
#: vertex is solved in a child process beside the first; on a busier machine the two would only slow
#: each other down. An idle machine measures 0.9-1.5 (best-fit's run on the openb lists varies by half).
SPARE_CPU_PACE = 2.5

#: Polishing with at least this many seconds left packs half the node types in a child process (with a
#: second CPU likely free: see SPARE_CPU_PACE).
PARALLEL_POLISH_FROM = 0.3

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
    repair: Repair | None = None,
    search_share: float = 1.0,
    target: float | None = None,
    prepared: Prepared | None = None,
    spare_cpu: bool = True,
) -> Allocation:
    """The allocation found by an exact backend on the compressed program, with its bound and gap.

    ``budget`` (default: ``options.time_limit`` from now): the answer comes back ``reserve`` seconds
    before its deadline at the latest. ``group_nodes`` (default: only above ``EXACT_NODE_LIMIT`` nodes)
    groups identical nodes into types; the program is then a relaxation solved over counts and decoded
    node by node, and the answer is ``optimal`` only when it reaches the bound. ``hint``: a heuristic
    allocation to start from. ``repair(allocation, budget) -> allocation``: applied to every decoded
    answer before answers are compared (the portfolio passes a fill pass that places what decoding lost).
    ``search_share``: the share of the time left after the first LP rounding that the backend's search
    gets (the caller keeps the rest, e.g. for a neighbourhood search); 0 skips the backend: the answer is
    then the best decoded LP rounding. ``target``: the least objective worth the search (a neighbourhood
    search asks for more than it has): once a bound proves that no answer reaches it, the program stops
    there, and the answer is ``unknown`` with that bound and ``stats["below_target"]``. ``prepared``: the
    program built beforehand by :func:`prepare` (its second LP vertex perhaps solving meanwhile).
    ``spare_cpu``: False when the caller runs a process of its own beside the program (see :func:`_second_cpu`).
    """
    budget = budget if budget is not None else Budget(options.time_limit)
    start = time.perf_counter()
    method = METHOD[backend]
    if prepared is None:
        prepared = compressed(problem, options, group_nodes=group_nodes)
    comp = prepared.comp
    stats: dict = {"backend": backend, **prepared.stats}
    if prepared.overloaded:
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
            stats={"overloaded_nodes": prepared.overloaded},
        )
    lexicographic = problem.weights.lexicographic
    bounds: dict[str, float] = {}
    search = _Search(
        problem, method, budget, reserve, repair, forecast=not options.deterministic, target=target, spare_cpu=spare_cpu
    )
    ahead: Child | None = None  # the second LP vertex solving in a child process
    try:
        budget.check(reserve)
        quick = capacity_bound(comp, budget)
        if quick is not None:
            bounds["capacity"] = quick
            budget.improve("capacity", bound=quick)
        search.check_target(bounds)
        budget.check(reserve)
        form = prepared.build(problem, options, budget, reserve=reserve, spare_cpu=spare_cpu)
        ahead, guided = prepared.take_child(), prepared.guided
        stats.update(prepared.stats)
        weights = {"primary": 1} if lexicographic else dict(form.weights)
        if hint is not None:
            search.hints.append(encode(form, hint))
        # LP relaxations: the bound, and rounded vertices as warm starts, each decoded into an answer. The
        # second vertex, solving in a child process (prepare()), is decoded before the backend searches
        # (decoded after, it was lost when the search's decoding ran long); without a child, it is solved
        # once the backend has run, with the time it leaves.
        methods = _lp_methods(form)
        _try_vertex(form, weights, methods.pop(0), search, bounds, stats, reserve)
        if ahead is not None and methods:
            lp, ahead = ahead.collect(reserve + search.decode_time), None
            stats["second_vertex"] = (
                "child process" if lp.values is not None else f"child process: {lp.stats.get('message')}"
            )
            _try_vertex(form, weights, methods.pop(0), search, bounds, stats, reserve, solved=lp)
        warm = search.best_hint(form)
        stats["hint_objective"] = None if warm is None else form.program.value(warm, weights)
        stats["prepare_time"] = round(time.perf_counter() - start, 4)
        # The backend stops in time to decode what it finds (as long as decoding a warm start took), and the
        # vertex solving in a child process, if any.
        keep = (
            reserve
            + DECODE_FLOOR
            + (
                DECODE_FACTOR * search.decode_time
                if search.decode_time
                else DECODE_SHARE * max(0.0, budget.left() - reserve)
            )
        )
        if search_share < 1.0:
            keep += (1.0 - search_share) * max(0.0, budget.left() - keep)
        if search_share > 0:
            run = _run_backend(backend, form, options, budget, warm, lexicographic, keep, report_bound=not guided)
            stats.update(_run_stats(run, stats["prepare_time"]))
            if run.bound is not None and not guided:
                bounds[backend] = float(np.floor(run.bound + 1e-6))
            if run.values is not None and not search.decoded(run.values):
                search.decode(form, run.values, run.status, backend)
        for lp_method in methods:
            if budget.expired(reserve + 1.5 * search.cost):
                break
            _try_vertex(form, weights, lp_method, search, bounds, stats, reserve)
        # The best answer's node types that lost units packed again with the other rules, with the time left.
        search.polish()
    except OutOfTime:
        stats["out_of_time"] = True
    except _BelowTarget:
        stats["below_target"] = True
    finally:
        if ahead is not None:
            ahead.cancel()
    stats["bounds"] = dict(bounds)
    stats["candidates"] = search.tried
    if search.skipped:
        stats["not_decoded"] = search.skipped
    bound = min(bounds.values()) if bounds else None
    best = search.best
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
    return best.allocation.replace(
        method=method,
        status=status,
        objective=float(objective),
        bound=None if bound is None else float(max(bound, objective)),
        wall_time=time.perf_counter() - start,
        stats=stats,
    )


class Prepared:
    """The program of a problem: compressed (:func:`compressed`), then built (:meth:`build`), its second
    LP vertex perhaps solving in a child process meanwhile; what :func:`solve_exact` starts from.
    ``overloaded``: the nodes where fixed jobs no longer fit (then there is nothing to build). Whoever
    prepares it and then does not solve it ends the child with :meth:`cancel`."""

    def __init__(self, comp: Compression, stats: dict, overloaded: list[str]) -> None:
        self.comp, self.stats, self.overloaded = comp, stats, overloaded
        self.form: Formulation | None = None
        self.guided = False
        self._child: Child | None = None

    def build(
        self, problem: Problem, options: SolveOptions, budget: Budget, *, reserve: float = 0.0, spare_cpu: bool = True
    ) -> Formulation:
        """Build the program (with the guides the options ask for), once; with a second CPU likely free
        and a deadline, start solving its second LP vertex (see :func:`_lp_methods`) in a child process,
        so that it runs beside whatever the caller does next."""
        if self.form is not None:
            return self.form
        form = build(self.comp)
        self.guided = _shape(form, problem, self.comp, options, self.stats)
        self.stats["variables"], self.stats["constraints"] = form.program.num_vars, form.program.num_rows
        methods = _lp_methods(form)
        if len(methods) > 1 and not options.deterministic and _second_cpu(budget, spare_cpu):
            weights = {"primary": 1} if problem.weights.lexicographic else dict(form.weights)
            solver, presolve = methods[1]
            self._child = lp_in_child(form.program, weights, budget, reserve=reserve, solver=solver, presolve=presolve)
        self.form = form
        return form

    @property
    def solving(self) -> bool:
        """Whether the second LP vertex is being solved in a child process."""
        return self._child is not None

    def take_child(self) -> Child | None:
        child, self._child = self._child, None
        return child

    def cancel(self) -> None:
        child = self.take_child()
        if child is not None:
            child.cancel()


def _second_cpu(budget: Budget, spare_cpu: bool) -> bool:
    """Whether the program may start a child process (a deadline, a second CPU likely free: see
    ``SPARE_CPU_PACE``); never when the caller runs one beside it (``spare_cpu`` False): three processes on
    two CPUs slowed the program more than its child gained (openb_like 2,000 x 14,000 seed 4 at 1.5 s, the
    strong rule's tail beside it: its answer won in 1 of 6 runs side by side, 6 of 6 without a child of
    its own; a review measured 12 of 19 against 16 of 16 with one CPU made usable)."""
    return spare_cpu and budget.limited and usable_cpus() > 1 and budget.pace < SPARE_CPU_PACE


def compressed(problem: Problem, options: SolveOptions, *, group_nodes: bool | None = None) -> Prepared:
    """``problem`` compressed into node types and job classes (grouped nodes past
    :data:`EXACT_NODE_LIMIT` unless ``group_nodes`` says), not built yet."""
    group = len(problem.nodes) > EXACT_NODE_LIMIT if group_nodes is None else group_nodes
    comp = compress(problem, allow_migration=options.allow_migration, group_nodes=group)
    return Prepared(comp, dict(comp.describe()), _overloaded(comp))


def prepare(problem: Problem, options: SolveOptions, budget: Budget, *, group_nodes: bool | None = None) -> Prepared:
    """``problem`` compressed and its program built (:meth:`Prepared.build`), its second LP vertex perhaps
    solving in a child process already."""
    prepared = compressed(problem, options, group_nodes=group_nodes)
    if not prepared.overloaded:
        prepared.build(problem, options, budget)
    return prepared


Repair = Callable[[Allocation, Budget], Allocation]


def _try_vertex(
    form: Formulation,
    weights: dict[str, int],
    lp_method: tuple[str | None, bool],
    search: _Search,
    bounds: dict[str, float],
    stats: dict,
    reserve: float,
    solved: ProgramRun | None = None,
) -> None:
    """Solve the LP relaxation with one method (or take ``solved``, its answer from a child process): its
    value bounds the objective; its vertex, rounded, is a warm start and, decoded, an answer."""
    solver, presolve = lp_method
    t0 = time.perf_counter()
    lp = solved or relax(form.program, weights, search.budget, reserve=reserve, solver=solver, presolve=presolve)
    stats.setdefault("lp_time", round(lp.wall_time, 4))
    if lp.bound is not None:
        bounds["lp"] = min(bounds.get("lp", np.inf), float(np.floor(lp.bound + 1e-6)))
        search.budget.improve("lp", bound=bounds["lp"])
        search.check_target(bounds)
    if lp.values is None:
        return
    rounded = round_solution(form, lp.values)
    search.hints.append(rounded)
    search.decode(form, rounded, Status.FEASIBLE, f"lp-{solver or 'default'}")
    search.cost = max(search.cost, time.perf_counter() - t0)


def _lp_methods(form: Formulation) -> list[tuple[str | None, bool]]:
    """The LP settings tried in turn: the fastest first; on grouped programs large enough for vertices
    to differ much, simplex with presolve second (another optimal vertex, which often decodes better)."""
    methods: list[tuple[str | None, bool]] = [(None, False)]
    if not form.compression.exact and form.program.num_vars >= SECOND_VERTEX_VARS:
        methods.append(("simplex", True))
    return methods


class _Search:
    """The answers decoded so far and the warm starts they came from; keeps the best."""

    def __init__(
        self,
        problem: Problem,
        method: str,
        budget: Budget,
        reserve: float,
        repair: Repair | None,
        *,
        forecast: bool = True,
        target: float | None = None,
        spare_cpu: bool = True,
    ) -> None:
        self.forecast = forecast  # skip a decode the clock says cannot finish (not in deterministic mode)
        self.spare_cpu = spare_cpu  # the caller leaves the second CPU free
        self.target = target
        self.problem = problem
        self.method = method
        self.budget = budget
        self.reserve = reserve
        self.repair = repair
        self.hints: list[np.ndarray] = []
        self.best: _Candidate | None = None
        self.tried: list[tuple[str, float]] = []
        self.skipped: list[str] = []  # answers not decoded: no time to
        self.decode_time = 0.0
        self.cost = 0.0  # seconds one LP + rounding + decoding took
        self._seen: list[np.ndarray] = []

    def check_target(self, bounds: dict[str, float]) -> None:
        """Stop the program (:class:`_BelowTarget`) when a bound proves that no answer reaches the target."""
        if self.target is not None and bounds and min(bounds.values()) < self.target:
            raise _BelowTarget

    def best_hint(self, form: Formulation) -> np.ndarray | None:
        return max(self.hints, key=lambda v: form.program.value(v, form.weights)) if self.hints else None

    def decoded(self, values: np.ndarray) -> bool:
        return any(np.array_equal(values, seen) for seen in self._seen)

    def decode(self, form: Formulation, values: np.ndarray, status: Status, source: str) -> None:
        """Decode ``values`` (the first pass: every type packed with the fast rule) and repair the answer;
        :meth:`polish` spends time left on the best one."""
        # Decoding stops at the deadline with nothing to show: do not start one that cannot finish (as long
        # as the last one took, or before the first, the unloaded estimate stretched by the pace).
        forecast = self.decode_time or DECODE_PER_JOB * len(self.problem.jobs) * self.budget.pace
        if self.forecast and self.budget.expired(self.reserve + forecast):
            self.skipped.append(source)
            return
        t0 = time.perf_counter()
        self._seen.append(values)
        decoding = start_decoding(form, values, self.budget, self.reserve)
        found = self._repaired(_Candidate.of(form, values, decoding, self.method, status, self.problem, source))
        self.decode_time = max(self.decode_time, time.perf_counter() - t0)
        self.tried.append((source, found.objective))
        self._offer(found)

    def polish(self) -> None:
        """Pack again, with the other rules, the node types where the best answer lost units, while the
        budget has time (keeping enough to rebuild and repair the answer); it replaces the best when it
        scores higher."""
        best = self.best
        if best is None or best.decoding is None:
            return
        keep = self.reserve + self.decode_time
        # A second CPU likely free and the time to use it: half the types are packed again in a child process.
        parallel = (
            self.forecast
            and _second_cpu(self.budget, self.spare_cpu)
            and not self.budget.expired(keep + PARALLEL_POLISH_FROM)
        )
        if self.budget.expired(keep) or not best.decoding.polish(self.budget, keep, parallel=parallel):
            return
        try:
            found = self._repaired(best.rebuilt(self.method, self.problem))
        except OutOfTime:
            return
        self.tried.append((f"{best.stats['decoded_from']}, polished", found.objective))
        self._offer(found)

    def _repaired(self, found: _Candidate) -> _Candidate:
        if self.repair is None:
            return found
        repaired = self.repair(found.allocation.replace(objective=found.objective), self.budget)
        if repaired.objective is not None and repaired.objective > found.objective:
            return found.with_allocation(repaired, repaired.objective, repaired.stats)
        return found

    def _offer(self, found: _Candidate) -> None:
        if self.best is None or found.objective > self.best.objective:
            self.best = found
            self.budget.improve(self.method, objective=found.objective)


class _BelowTarget(Exception):
    """A bound proved that no answer of the program reaches the caller's target."""


class _Candidate:
    """A decoded answer: the allocation, its exact objective, the program value it was decoded from, and
    the decoding (to polish) with what it decoded."""

    def __init__(
        self,
        allocation: Allocation,
        objective: float,
        program_value: float,
        stats: dict,
        decoding: Decoding | None = None,
        source: tuple[Formulation, np.ndarray, Status] | None = None,
    ) -> None:
        self.allocation = allocation
        self.objective = objective
        self.program_value = program_value
        self.stats = stats
        self.decoding = decoding
        self.source = source

    @classmethod
    def of(
        cls,
        form: Formulation,
        values: np.ndarray,
        decoding: Decoding,
        method: str,
        status: Status,
        problem: Problem,
        source: str,
    ) -> _Candidate:
        decoded = decoding.result(method, status)
        allocation = decoded.allocation
        if form.weights.get("future"):
            allocation = held_back(problem, allocation)
        value = evaluate(problem, allocation)
        objective = float(value.primary if problem.weights.lexicographic else value.total)
        stats = {"decoded_from": source, "decode_lost_replicas": decoded.lost_replicas}
        if form.weights.get("future"):
            stats["held_back"] = sum(1 for u in allocation.unplaced if u.reason == Reason.HELD_BACK)
        weights = {"primary": 1} if problem.weights.lexicographic else form.weights
        program_value = float(form.program.value(values, weights))
        return cls(allocation, objective, program_value, stats, decoding, (form, values, status))

    def rebuilt(self, method: str, problem: Problem) -> _Candidate:
        """The candidate of this decoding as it stands now (after polishing)."""
        assert self.decoding is not None and self.source is not None
        form, values, status = self.source
        return _Candidate.of(form, values, self.decoding, method, status, problem, self.stats["decoded_from"])

    def with_allocation(self, allocation: Allocation, objective: float, stats: dict) -> _Candidate:
        return _Candidate(
            allocation, objective, self.program_value, {**self.stats, **stats}, self.decoding, self.source
        )


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
