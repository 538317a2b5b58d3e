"""The anytime engines: heuristics as the floor, the exact program on top, every stage within one budget.

``solve()`` runs the engines registered here. Each returns its best answer so far when the budget's
deadline comes or the caller sets ``stop``:

- a heuristic rule places jobs until its deadline and lists the rest with reason ``time limit``;
- an exact method (``cpsat``, ``milp``, ``milp-highs``) first runs the warm-start heuristic (its floor
  and its hint), then ``optalloc.models.solve_exact`` (pooled-capacity bound, LP relaxation and its
  rounding, the backend, decoding), then fills what decoding lost; it answers the better of the two;
- ``auto`` runs a small portfolio of heuristics, then CP-SAT on the program, then re-places the
  program's selection with the heuristic, and keeps the best answer: never worse than its heuristics.

Where the time goes is one documented configuration, :class:`PortfolioConfig`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from optalloc.core import Allocation, FutureValue, MethodUnavailable, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortfolioConfig:
    """How an anytime solve divides its budget (seconds are wall-clock).

    ``warm_start_share``: the share of the budget that ``auto``'s heuristic candidates beyond the first
    may use while the exact program still has time to run (all of it when the program cannot run).
    ``min_exact``: the fewest seconds worth starting the exact program with.
    ``finish_factor``: time kept back for the fill pass and the re-placing of the program's selection,
    as a multiple of what the first heuristic took (each is about one heuristic run).
    ``verify_base`` + ``verify_per_replica`` x replicas: the time ``solve()`` keeps for verifying the
    answer (an estimate; the verification itself is not cut short).
    """

    warm_start_share: float = 0.25
    min_exact: float = 0.05
    finish_factor: float = 2.0
    verify_base: float = 0.003
    verify_per_replica: float = 2e-6


CONFIG = PortfolioConfig()


def verify_reserve(problem: Problem, config: PortfolioConfig = CONFIG) -> float:
    """Seconds ``solve()`` keeps for verifying an answer of ``problem``."""
    replicas = int(problem.job_replicas.sum()) if problem.jobs else 0
    return config.verify_base + config.verify_per_replica * (replicas + len(problem.nodes))


# Heuristics ---------------------------------------------------------------------------------------
def run_heuristic(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    *,
    rule: str,
    order: str | None = None,
    future: FutureValue | None = None,
) -> Allocation:
    """One heuristic rule on ``problem`` (jobs in ``order``, default the options' ordering)."""
    from optalloc import heuristics

    answer = heuristics.allocate(
        problem,
        rule=rule,
        order=options.order if order is None else order,
        seed=options.seed,
        round=options.round,
        future=future,
    )
    budget.improve(rule, objective=answer.objective)
    return answer


def heuristic_engine(rule: str) -> Callable[[Problem, SolveOptions, Budget], Allocation]:
    def run(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
        return run_heuristic(problem, options, budget, rule=rule, future=forecast(problem, options))

    run.__name__ = f"run_{rule.replace('-', '_')}"
    return run


# Exact engines ------------------------------------------------------------------------------------
def exact_engine(backend: str) -> Callable[[Problem, SolveOptions, Budget], Allocation]:
    def run(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
        from optalloc.models import solve_exact

        future = forecast(problem, options)
        warm = run_heuristic(problem, options, budget, rule=_warm_rule(options), future=future)
        if budget.expired(CONFIG.min_exact):
            return _fallback(warm, None, "no time left for the program")
        keep = CONFIG.finish_factor * max(warm.wall_time, 0.001)
        exact = solve_exact(problem, options, budget, backend=backend, hint=warm, reserve=keep)  # type: ignore[arg-type]
        if exact.status.has_solution:
            exact = fill(problem, exact, options, budget)
        return _better(problem, options, future, warm, exact, ties_to_exact=True)

    run.__name__ = f"run_{backend}"
    return run


def auto(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
    """The portfolio: heuristics, then CP-SAT hinted with the best of them, then the program's selection
    re-placed by the heuristic; the best answer wins (never worse than the heuristics)."""
    from optalloc.models import solve_exact

    future = forecast(problem, options)
    warm = best_heuristic(problem, options, budget, future)
    spent = warm.stats.get("portfolio_time", warm.wall_time)
    if budget.expired(CONFIG.min_exact):
        return _fallback(warm, None, "no time left for CP-SAT")
    # Keep back what follows the program: the fill pass and re-placing its selection (a heuristic run each).
    keep = CONFIG.finish_factor * max(warm.wall_time, 0.001)
    exact = solve_exact(problem, options, budget, backend="cpsat", hint=warm, reserve=keep)
    if exact.status.has_solution:
        exact = fill(problem, exact, options, budget)
        if exact.status is not Status.OPTIMAL and not budget.expired(1.5 * warm.wall_time):
            exact = replace_with_heuristic(problem, exact, options, budget, future)
    answer = _better(problem, options, future, warm, exact)
    portfolio = {"heuristic": warm.method, "heuristic_objective": warm.objective, "heuristic_time": round(spent, 4)}
    return answer.replace(stats={**answer.stats, **portfolio})


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
        bound = exact.bound
    if bound is not None and warm.objective is not None and bound < warm.objective:
        bound = None  # a bound of another objective (lexicographic primary): not this answer's
    proven = bound is not None and warm.objective is not None and warm.objective >= bound
    return warm.replace(bound=bound, status=Status.OPTIMAL if proven else warm.status, stats=stats)


def _warm_rule(options: SolveOptions) -> str:
    from optalloc.solve import get_method

    rule = get_method(options.warm_start)
    if rule.kind != "heuristic":
        raise MethodUnavailable(f"warm_start {options.warm_start!r} is not a heuristic rule")
    return rule.name


def best_heuristic(
    problem: Problem, options: SolveOptions, budget: Budget, future: FutureValue | None = None
) -> Allocation:
    """The best of a small portfolio of heuristics (``auto``'s warm start and fallback).

    Always the warm-start rule (best-fit by default) in the caller's order; then, while the portfolio
    has used less than ``warm_start_share`` of the budget, the same rule in largest-demand-first order
    and, for a plan from scratch (nothing runs yet, no fragmentation guide), the same rule and first-fit
    in ``gpu-first`` order (biggest GPU jobs first, leanest in CPU and memory first), which packs
    over-subscribed whole-GPU queues where the others strand GPUs on nodes out of memory. Online callers
    (arrivals in batches, a controller step around running jobs) keep their order, because packing the
    most now in another order leaves a state later arrivals fit worse (measured on the FGD protocol in
    batches and on the openb replay). A candidate runs only when it is expected to finish in time (as
    long as the first one took).
    """
    rule = _warm_rule(options)
    candidates = dict.fromkeys(
        [
            (rule, options.order),
            (rule, "largest-demand-first"),
            *([(rule, "gpu-first"), ("first-fit", "gpu-first")] if _from_scratch(problem, options) else []),
        ]
    )
    start = budget.clock()
    answers: list[Allocation] = []
    share = CONFIG.warm_start_share * (budget.deadline - budget.start) if budget.limited else math.inf
    for i, (name, order) in enumerate(candidates):
        spent = budget.clock() - start
        each = spent / max(i, 1)
        if i >= 1 and (spent + each > share or budget.expired(each)):
            break
        answers.append(run_heuristic(problem, options, budget, rule=name, order=order, future=future))
    best = max(answers, key=scorer(problem, future, options))
    return best.replace(stats={**best.stats, "portfolio_time": round(budget.clock() - start, 4)})


def _from_scratch(problem: Problem, options: SolveOptions) -> bool:
    """Whether ``problem`` is a plan from scratch: nothing runs yet and no fragmentation guide is asked."""
    running = problem.current is not None and bool(problem.current.placements)
    return not running and options.fragmentation_guide <= 0


# Repairs of an exact answer -----------------------------------------------------------------------
FILL_RULE = "best-fit"
LOST_SELECTION = "lost placing the optimiser's selection"


def fill(problem: Problem, answer: Allocation, options: SolveOptions, budget: Budget | None = None) -> Allocation:
    """Place what the exact answer left out but still fits (decoding losses), with a fast heuristic."""
    from optalloc import heuristics
    from optalloc.core import ClusterState

    todo = [u for u in answer.unplaced if u.reason == Reason.INSUFFICIENT_CAPACITY]
    if not todo or (budget is not None and budget.expired()):
        return answer
    state = ClusterState.of(problem, answer)
    placer = heuristics.Placer(problem, FILL_RULE, seed=options.seed, state=state)
    added: list = []
    still: list[Unplaced] = [u for u in answer.unplaced if u.reason != Reason.INSUFFICIENT_CAPACITY]
    value = problem.replica_value
    for u in sorted(todo, key=lambda u: -int(value[problem.job_index[u.job]])):
        got = placer.place(problem.job_index[u.job])
        if got is None:
            still.append(u)
        else:
            added.extend(got)
    if not added:
        return answer
    filled = answer.replace(placements=answer.placements + tuple(added), unplaced=tuple(still))
    score = evaluate(problem, filled)
    total = score.primary if problem.weights.lexicographic else score.total
    if answer.objective is not None and total <= answer.objective:
        return answer
    stats = {**answer.stats, "filled_by": FILL_RULE, "filled_replicas": len(added)}
    bound = answer.bound if answer.bound is None else max(answer.bound, float(total))
    # Filling what decoding lost up to the program's proven bound proves the answer optimal.
    proven = answer.bound is not None and float(total) >= answer.bound
    status = Status.OPTIMAL if proven else answer.status
    if budget is not None:
        budget.improve(answer.method or "fill", objective=float(total))
    return filled.replace(objective=float(total), bound=bound, status=status, stats=stats)


def replace_with_heuristic(
    problem: Problem,
    exact: Allocation,
    options: SolveOptions,
    budget: Budget | None = None,
    future: FutureValue | None = None,
) -> Allocation:
    """The program chose which jobs run; let the warm-start rule place those jobs, largest first.

    Decoding type counts into nodes can lose what the aggregated program packed; a heuristic given
    the program's selection, largest demand first, often fits all of it, and what it cannot fit is
    offered to the fill pass with everything else left out. The better of the two answers wins; on a
    tie the heuristic's placement is kept when the fragmentation guide is on (it chose with the future
    mix in mind).
    """
    from optalloc import heuristics

    chosen = exact.placed_jobs
    current = problem.current
    if current is not None:  # running jobs the program stopped are out of the subset, and out of current
        current = current.replace(placements=tuple(p for p in current.placements if p.job in chosen), unplaced=())
    subset = problem.replace(jobs=tuple(j for j in problem.jobs if j.name in chosen), current=current)
    placed = heuristics.allocate(
        subset,
        rule=options.warm_start,
        order="largest-demand-first",
        seed=options.seed,
        future=future,
    )
    missing = tuple(
        u if u.reason == Reason.HELD_BACK else Unplaced(u.job, Reason.INSUFFICIENT_CAPACITY, LOST_SELECTION)
        for u in placed.unplaced
    )
    candidate = placed.replace(unplaced=tuple(u for u in exact.unplaced if u.job not in chosen) + missing)
    value = evaluate(problem, candidate)
    candidate = candidate.replace(objective=float(value.primary if problem.weights.lexicographic else value.total))
    if missing:
        candidate = fill(problem, candidate, options, budget)
    score = scorer(problem, future, options)
    mine, theirs = score(candidate), score(exact)
    if mine < theirs or (mine == theirs and options.fragmentation_guide <= 0):
        return exact
    stats = {**exact.stats, "placed_by": options.warm_start}
    # Proven by its objective, not by the ranking score (primary term only, or plus a future value).
    proven = exact.bound is not None and candidate.objective is not None and candidate.objective >= exact.bound
    if budget is not None and candidate.objective is not None:
        budget.improve(exact.method or "auto", objective=candidate.objective)
    return candidate.replace(
        method=exact.method, status=Status.OPTIMAL if proven else Status.FEASIBLE, bound=exact.bound, stats=stats
    )


# Ranking ------------------------------------------------------------------------------------------
def forecast(problem: Problem, options: SolveOptions) -> FutureValue | None:
    """The future value of the free GPU capacity under ``options.admission_forecast`` (None when off)."""
    if options.admission_forecast <= 0 or problem.weights.lexicographic:
        return None
    from optalloc.core import ClusterState
    from optalloc.models.future import future_value

    return future_value(problem, ClusterState.of(problem), options.admission_forecast)


def scorer(
    problem: Problem, future: FutureValue | None, options: SolveOptions | None = None
) -> Callable[[Allocation], float]:
    """How ``auto`` ranks answers: the objective, plus with a forecast the future value of the GPU
    capacity each answer leaves (``optalloc.models.future``).

    With a fragmentation guide (online batches) only the objective's primary term counts, and the future
    value is left out of the ranking (it has already shaped which jobs each engine holds back): an answer
    replaces the warm start's fragmentation-aware placement only when it places more now. Otherwise the
    secondary terms (fewer partly used GPUs) or the future value's approximation would let an answer
    that merely packs the batch differently win, and later arrivals fit worse (on the FGD protocol in
    batches, default list, seed 42: 95.7% instead of 96.3% at 130% without a forecast, 97.4% instead of
    98.3% with ``admission_forecast=2``).
    """
    primary = options is not None and options.fragmentation_guide > 0 and not problem.weights.lexicographic
    if primary:
        future = None

    def score(answer: Allocation) -> float:
        if not answer.status.has_solution or answer.objective is None:
            return float("-inf") if answer.objective is None else answer.objective
        from optalloc.core import ClusterState

        base = float(evaluate(problem, answer).primary) if primary else answer.objective
        return base if future is None else base + future.of_state(ClusterState.of(problem, answer))

    return score


def lp_bound_engine(problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
    """The warm-start heuristic's answer with the LP-relaxation ceiling as its bound (within the budget)."""
    from optalloc.models.classes import compress
    from optalloc.models.formulation import build
    from optalloc.models.lp_bound import capacity_bound, relax

    warm = best_heuristic(problem, options, budget)
    bound: float | None = None
    try:
        budget.check()
        comp = compress(problem, allow_migration=options.allow_migration)
        bound = capacity_bound(comp, budget)
        budget.check()
        form = build(comp)
        weights = {"primary": 1} if problem.weights.lexicographic else form.weights
        run = relax(form.program, weights, budget)
        if run.bound is not None:
            bound = math.floor(run.bound + 1e-6) if bound is None else min(bound, math.floor(run.bound + 1e-6))
    except OutOfTime:
        pass
    stats = {**warm.stats, "bound": "lp-relaxation" if bound is not None else "none in the time limit"}
    if bound is None:
        return warm.replace(stats=stats)
    bound = max(float(bound), warm.objective or 0.0)
    budget.improve("lp", bound=bound)
    proven = warm.objective is not None and warm.objective >= bound
    return warm.replace(bound=bound, status=Status.OPTIMAL if proven else warm.status, stats=stats)
