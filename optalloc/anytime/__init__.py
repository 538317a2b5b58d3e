"""The anytime engines: heuristics as the floor, the exact program on top, every stage within one budget.

``solve()`` runs the engines registered here. Each returns its best answer so far when the budget's
deadline comes or the caller sets ``stop``:

- a heuristic rule places jobs until its deadline and lists the rest with reason ``time limit``;
- an exact method (``cpsat``, ``milp``, ``milp-highs``) first runs the warm-start heuristic (its floor
  and its hint), then ``optalloc.models.solve_exact`` (pooled-capacity bound, LP relaxation and its
  rounding, the backend, decoding), then fills what decoding lost; it answers the better of the two;
- ``auto`` runs a small portfolio of heuristics, then CP-SAT on the program, then re-places the
  program's selection with the heuristic, and keeps the best answer: never worse than its heuristics.

Where the time goes is one documented configuration, ``SolveOptions.portfolio`` (:class:`PortfolioConfig`).
The heuristics' portfolio is :mod:`optalloc.anytime.portfolio`, the strong rule in child processes
:mod:`optalloc.anytime.strong_tail`; the repairs of an exact answer and the ranking of answers are
:mod:`optalloc.anytime.repair`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optalloc.anytime.portfolio import _first_rule, best_heuristic, run_heuristic
from optalloc.anytime.repair import fill, forecast, replace_with_heuristic, scorer
from optalloc.anytime.strong_tail import Beside, transfer
from optalloc.anytime.timing import EXACT_NODES, exact_setup, first_decode
from optalloc.anytime.timing import verify_reserve as verify_reserve  # solve() keeps it for verifying
from optalloc.core import Allocation, FutureValue, Problem, Status
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions

if TYPE_CHECKING:
    from optalloc.models.exact import Backend, Prepared

log = logging.getLogger(__name__)


def heuristic_engine(rule: str) -> Callable[[Problem, SolveOptions, Budget], Allocation]:
    def run(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
        return run_heuristic(problem, options, budget, rule=rule, future=forecast(problem, options))

    run.__name__ = f"run_{rule.replace('-', '_')}"
    return run


# Exact engines ------------------------------------------------------------------------------------
def exact_engine(backend: Backend) -> Callable[[Problem, SolveOptions, Budget], Allocation]:
    def run(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
        from optalloc.models import solve_exact

        future = forecast(problem, options)
        early_bound(problem, options, budget)
        prepared = prepare_early(problem, options, budget)
        try:
            warm = run_heuristic(problem, options, budget, rule=_first_rule(problem, options), future=future)
            setup = exact_setup(problem, options.portfolio, built=prepared is not None)
            if budget.expired(budget.pace * (setup + first_decode(problem))):
                return proven(_fallback(warm, None, "no time left for the program"), budget)
            exact = solve_exact(
                problem,
                options,
                budget,
                backend=backend,
                hint=warm,
                repair=_filler(problem, options),  # type: ignore[arg-type]
                prepared=prepared,
            )
        finally:
            if prepared is not None:
                prepared.cancel()
        return proven(_better(problem, options, future, warm, exact, ties_to_exact=True), budget)

    run.__name__ = f"run_{backend}"
    return run


def auto(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
    """The portfolio: heuristics; the program (bound, LP roundings, CP-SAT hinted with the best answer so
    far), each decoded answer filled; the program's selection re-placed by the heuristic; then a large
    neighbourhood search on the best answer until the deadline. The best answer wins: never worse than
    the heuristics."""
    future = forecast(problem, options)
    early_bound(problem, options, budget)
    prepared = prepare_early(problem, options, budget)
    try:
        return _auto(problem, options, budget, future, prepared)
    finally:
        if prepared is not None:
            prepared.cancel()


def _auto(
    problem: Problem, options: SolveOptions, budget: Budget, future: FutureValue | None, prepared: Prepared | None
) -> Allocation:
    aside: list[Beside] = []  # heuristics run in child processes beside the program (best_heuristic)
    try:
        return _program(problem, options, budget, future, prepared, aside)
    finally:
        for child in aside:
            child.close()


def _program(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    future: FutureValue | None,
    prepared: Prepared | None,
    aside: list[Beside],
) -> Allocation:
    from optalloc.models import solve_exact
    from optalloc.models.lns import improve

    # (with the program's second LP vertex solving in a child already, the strong rule's tail does not go
    # on beside it: three processes on two CPUs)
    insure = prepared is None or not prepared.solving
    make_room = None if insure else prepared.cancel  # type: ignore[union-attr]
    warm = best_heuristic(
        problem, options, budget, future, built=prepared is not None, aside=aside, insure=insure, make_room=make_room
    )
    spent = warm.stats.get("portfolio_time", warm.wall_time)
    portfolio = {
        "heuristic": warm.method,
        "heuristic_objective": warm.objective,
        "heuristic_time": round(spent, 4),
        "portfolio_candidates": warm.stats.get("portfolio_candidates", {}),
    }
    setup = exact_setup(problem, options.portfolio, built=prepared is not None)
    if budget.expired(budget.pace * (setup + first_decode(problem))):
        warm = _with_aside(problem, options, future, warm, aside, portfolio, budget)
        answer = _fallback(warm, None, "no time left for the program")
        return proven(answer.replace(stats={**answer.stats, **portfolio}), budget)
    for child in [child for child in aside if not child.beside_program]:
        aside.remove(child)
        child.close()  # the strong rule's tail where the program's first answer beats it: it would slow the program
    grouped = len(problem.nodes) > EXACT_NODES
    lns = grouped and future is None and options.fragmentation_guide <= 0
    # On programs over node types, CP-SAT gets a share of the time once the LP roundings are decoded and the
    # neighbourhood search the rest; otherwise CP-SAT gets it all, less one heuristic run for re-placing
    # the program's selection with the heuristic.
    keep = 0.0 if lns else options.portfolio.finish_factor * max(warm.wall_time, 0.001)
    if aside:  # the time to read what the children beside it answer
        keep += transfer(problem, budget)
    exact = solve_exact(
        problem,
        options,
        budget,
        backend="cpsat",
        hint=warm,
        reserve=keep,
        repair=_filler(problem, options),
        search_share=options.portfolio.search_share if lns else 1.0,
        prepared=prepared,
        spare_cpu=not any(child.to_deadline for child in aside),  # (else three processes on two CPUs)
    )
    if not lns and exact.status is Status.FEASIBLE and not budget.expired(1.5 * warm.wall_time):
        exact = replace_with_heuristic(problem, exact, options, budget, future)
    warm = _with_aside(problem, options, future, warm, aside, portfolio, budget)
    answer = _better(problem, options, future, warm, exact)
    if lns and answer.status is Status.FEASIBLE and not budget.expired(options.portfolio.min_exact):
        answer = improve(problem, answer, options, budget, engine=answer.method or "lns").allocation
    return proven(answer.replace(stats={**answer.stats, **portfolio}), budget)


def _with_aside(
    problem: Problem,
    options: SolveOptions,
    future: FutureValue | None,
    warm: Allocation,
    aside: list[Beside],
    portfolio: dict[str, Any],
    budget: Budget,
) -> Allocation:
    """The best of ``warm`` and what the heuristics run in child processes answered (waiting for each
    until its answer is due, or the budget's deadline if that comes first); ``portfolio``'s candidates
    list them too."""
    if not aside:
        return warm
    answers = [warm]
    while aside:
        answers.extend(aside.pop(0).collect(budget))  # (off the list first: collect ends the child, even on error)
    tried = dict(portfolio["portfolio_candidates"])
    tried.update({f"{a.method}/{a.stats.get('order')}": a.objective for a in answers[1:]})
    portfolio["portfolio_candidates"] = tried
    best = max(answers, key=scorer(problem, future, options))
    if best is not warm:
        portfolio.update(heuristic=best.method, heuristic_objective=best.objective)
    return best


def prepare_early(problem: Problem, options: SolveOptions, budget: Budget) -> Prepared | None:
    """Build the program before the first heuristic runs, and start its second LP vertex in a child
    process (``optalloc.models.exact.prepare``), when the budget holds the program's run twice over: the
    vertex that often decodes best (a second or so of simplex on the openb lists) then solves beside the
    heuristics instead of after them. Shorter budgets run the heuristics first, as their floor."""
    if not budget.limited or options.deterministic:
        return None
    if budget.expired(2 * budget.pace * (exact_setup(problem, options.portfolio) + first_decode(problem))):
        return None
    from optalloc.models.exact import prepare

    return prepare(problem, options, budget)


#: The largest share of the time left the early bound may take (its forecast): the heuristics, the floor, need
#: the rest.
BOUND_SHARE = 1 / 3


def early_bound(problem: Problem, options: SolveOptions, budget: Budget) -> None:
    """Report a bound before any heuristic runs, when the caller's time limit is at least
    ``early_bound_from``: the pooled-capacity bound when its forecast (``bound_base`` + ``bound_per_job``
    x jobs, stretched by the pace) is at most ``BOUND_SHARE`` of the time left, else the total value of
    the jobs (``value_bound``, at ``value_bound_per_job``) when that one's is. Either cannot be
    interrupted: the heuristics, the floor, keep the rest. (On 150,000 jobs at 0.5 s, 0.36 s are left
    once the verification's reserve is kept: the pooled bound's 0.17-0.24 s took one benchmark run to
    0.73 s.)"""
    config = options.portfolio
    from optalloc.models.lp_bound import quick_bound, value_bound

    def affordable(per_job: float) -> bool:
        forecast = budget.pace * (config.bound_base + per_job * len(problem.jobs))
        return not budget.limited or not budget.expired(forecast / BOUND_SHARE)

    if budget.limited and budget.time_limit < config.early_bound_from:
        return
    pooled = affordable(config.bound_per_job)
    if not pooled and not affordable(config.value_bound_per_job):
        return
    bound = quick_bound(problem, budget) if pooled else value_bound(problem)
    if bound is not None:
        budget.improve("capacity" if pooled else "value", bound=bound)


def proven(answer: Allocation, budget: Budget) -> Allocation:
    """``answer`` with the best bound any stage of the solve proved (the budget's record), and status
    ``optimal`` exactly when its objective reaches that bound."""
    if answer.status is Status.INFEASIBLE or answer.objective is None:
        return answer
    bound = (
        budget.bound
        if answer.bound is None or (budget.bound is not None and budget.bound < answer.bound)
        else answer.bound
    )
    if bound is None:
        return answer.replace(status=Status.FEASIBLE if answer.status is Status.OPTIMAL else answer.status)
    bound = max(bound, answer.objective)
    status = Status.OPTIMAL if answer.objective >= bound else Status.FEASIBLE
    if not answer.status.has_solution:
        status = answer.status
    return answer.replace(bound=bound, status=status)


def _filler(problem: Problem, options: SolveOptions) -> Callable[[Allocation, Budget], Allocation]:
    """The repair ``solve_exact`` applies to each decoded answer: the fill pass."""

    def repair(answer: Allocation, budget: Budget) -> Allocation:
        return fill(problem, answer.replace(status=Status.FEASIBLE), options, budget)

    return repair


def _better(
    problem: Problem,
    options: SolveOptions,
    future: FutureValue | None,
    warm: Allocation,
    exact: Allocation,
    *,
    ties_to_exact: bool = False,
) -> Allocation:
    """The exact answer when it scores higher than the heuristic's, else the heuristic's with the bound.

    In ``auto`` ties go to the heuristic (same value, and its placement was chosen with the future in
    mind); an exact method keeps its own answer on a tie."""
    if exact.status is Status.INFEASIBLE:
        return exact  # what must stay where it runs no longer fits: no answer keeps it
    score = scorer(problem, future, options)
    if exact.status.has_solution and (score(exact) > score(warm) or (ties_to_exact and score(exact) == score(warm))):
        return exact
    return _fallback(warm, exact, None)


def _fallback(warm: Allocation, exact: Allocation | None, why: str | None) -> Allocation:
    """The heuristic answer, with the program's bound when there is one (optimal when it reaches it)."""
    stats = dict(warm.stats)
    if why is not None:
        stats["portfolio"] = why
    bound = None
    if exact is not None:
        stats["exact_status"] = exact.status.value
        stats["exact_objective"] = exact.objective
        stats.update({key: exact.stats[key] for key in EXACT_STATS if key in exact.stats})
        bound = exact.bound
    if bound is not None and warm.objective is not None and bound < warm.objective:
        bound = None  # a bound of another objective (lexicographic primary): not this answer's
    proven = bound is not None and warm.objective is not None and warm.objective >= bound
    return warm.replace(bound=bound, status=Status.OPTIMAL if proven else warm.status, stats=stats)


#: What a heuristic answer keeps of the program's statistics when it wins over the program's answer.
EXACT_STATS = ("bounds", "candidates", "future_value", "variables", "constraints", "lns_steps", "lns_gain")


def lp_bound_engine(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
    """The best heuristic answer with the LP-relaxation ceiling as its bound (within the budget): the
    pooled-capacity bound first, then the program's LP relaxation when there is time for it."""
    from optalloc.models.classes import compress
    from optalloc.models.formulation import build
    from optalloc.models.lp_bound import relax

    early_bound(problem, options, budget)
    warm = best_heuristic(problem, options, budget)
    try:
        budget.check()
        form = build(compress(problem, allow_migration=options.allow_migration))
        weights = {"primary": 1} if problem.weights.lexicographic else form.weights
        run = relax(form.program, weights, budget)
        if run.bound is not None:
            budget.improve("lp", bound=math.floor(run.bound + 1e-6))
    except OutOfTime:
        pass
    bound = budget.bound
    stats = {**warm.stats, "bound": "none in the time limit" if bound is None else "lp-relaxation"}
    return proven(warm.replace(stats=stats), budget)
