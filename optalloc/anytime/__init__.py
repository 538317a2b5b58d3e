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
The strong rule in child processes is :mod:`optalloc.anytime.strong_tail`; the repairs of an exact answer
and the ranking of answers are :mod:`optalloc.anytime.repair`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optalloc.anytime.repair import fill, forecast, replace_with_heuristic, scorer
from optalloc.anytime.strong_tail import (
    Beside,
    Head,
    hurried,
    strong_beside,
    strong_beside_program,
    strong_head,
    transfer,
)
from optalloc.anytime.timing import (
    EXACT_NODES,
    IDLE_PACE,
    exact_setup,
    first_answer_fits,
    first_decode,
    tail_beside_program,
)
from optalloc.anytime.timing import verify_reserve as verify_reserve  # solve() keeps it for verifying
from optalloc.core import Allocation, FutureValue, MethodUnavailable, Problem, Status
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions

if TYPE_CHECKING:
    from optalloc.models.exact import Backend, Prepared

log = logging.getLogger(__name__)


# Heuristics ---------------------------------------------------------------------------------------
def run_heuristic(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    *,
    rule: str,
    order: str | None = None,
    future: FutureValue | None = None,
    head: Head | None = None,
) -> Allocation:
    """One heuristic rule on ``problem`` (jobs in ``order``, default the options' ordering); ``head``:
    another rule for the head of the queue (and the rest after a time; :class:`Head`)."""
    from optalloc import heuristics

    started = budget.clock()
    answer = heuristics.allocate(
        problem,
        rule=rule,
        head_rule=None if head is None else head.rule,
        head_jobs=0 if head is None else head.jobs,
        rule_until=None if head is None else head.until,
        head_per_job=0.0 if head is None else head.per_job,
        probe_jobs=0 if head is None else head.probe,
        order=options.order if order is None else order,
        seed=options.seed,
        round=options.round,
        future=future,
        deadline=budget.deadline if budget.limited else None,
    )
    if rule in PACE_RULES and head is None and future is None and not options.deterministic:
        # The simple rules' speed is known (jobs per second, unloaded): how long this run took says how
        # loaded the machine is now, and every later forecast of uninterruptible work stretches with it.
        # (Not in deterministic mode: a decision that follows the machine's load would not repeat.)
        decided = answer.stats.get("jobs", 0) - answer.stats.get("undecided", 0)
        budget.observe_pace(decided / options.portfolio.pace_jobs_per_second, budget.clock() - started)
    budget.improve(answer.method or rule, objective=answer.objective)
    return answer


#: The rules whose unloaded speed ``PortfolioConfig.pace_jobs_per_second`` gives (the pace's yardstick).
PACE_RULES = frozenset({"best-fit", "first-fit", "worst-fit"})


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
    warm = best_heuristic(problem, options, budget, future, built=prepared is not None, aside=aside, insure=insure)
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


def early_bound(problem: Problem, options: SolveOptions, budget: Budget) -> None:
    """Report the pooled-capacity bound before any heuristic runs, when the budget has room for it (tens
    of milliseconds on 150,000 jobs): then every answer past half a second has a bound and a gap."""
    if budget.limited and budget.left() < options.portfolio.early_bound_from:
        return
    from optalloc.models.lp_bound import quick_bound

    bound = quick_bound(problem, budget)
    if bound is not None:
        budget.improve("capacity", bound=bound)


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


def _heuristic_rule(name: str, option: str) -> str:
    """The heuristic rule called ``name`` (the value of ``option``); MethodUnavailable if it is not one."""
    from optalloc.solve import get_method

    rule = get_method(name)
    if rule.kind != "heuristic":
        raise MethodUnavailable(f"{option} {name!r} is not a heuristic rule")
    return rule.name


def _warm_rule(options: SolveOptions) -> str:
    return _heuristic_rule(options.warm_start, "warm_start")


def _first_rule(problem: Problem, options: SolveOptions) -> str:
    """The first heuristic of a solve: ``PortfolioConfig.scratch_rule`` for a plan from scratch, else the
    warm-start rule."""
    scratch = options.portfolio.scratch_rule
    if scratch is not None and _from_scratch(problem, options):
        return _heuristic_rule(scratch, "scratch_rule")
    return _warm_rule(options)


def best_heuristic(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    future: FutureValue | None = None,
    *,
    built: bool = False,
    aside: list[Beside] | None = None,
    insure: bool = True,
) -> Allocation:
    """The best of a small portfolio of heuristics (``auto``'s warm start and fallback).

    First the first rule (:func:`_first_rule`: first-fit for a plan from scratch, else the warm-start
    rule, best-fit by default) in the caller's order; for a plan from scratch, the strong rule
    (``PortfolioConfig.strong_rule``) when there is time for it; then, while the portfolio has used less
    than ``warm_start_share`` of the time the program's run leaves (twice its expected time, see
    :func:`exact_setup` and :func:`first_decode`), for a plan from scratch (nothing runs yet, no
    fragmentation guide) first-fit and the warm-start rule in ``gpu-first`` order (biggest GPU jobs
    first, leanest in CPU and memory first), which packs over-subscribed whole-GPU queues where the
    others strand GPUs on nodes out of memory (on multigpu50: 99.7% of the GPUs against 93.0%; they
    come first, being the cheapest: a third of a run in the caller's order there), then both in the
    caller's order, and last the warm-start rule in largest-demand-first order. When the program will
    have no time after the first heuristic (a short budget, a loaded machine), the others may use the
    whole budget instead of ``warm_start_share``, and the strong rule, when it cannot place every job in
    time, places the tail of the queue after the first rule placed its head (:mod:`optalloc.anytime.strong_tail`): in
    a child process beside the others when a second CPU is likely free, else after them. Online callers (arrivals in batches, a controller step around
    running jobs) keep their rule and order, because packing the most now in another order leaves a
    state later arrivals fit worse (measured on the FGD protocol in batches and on the openb replay). A
    candidate runs only when it is expected to finish in time (as long as the first one took).
    ``built``: the program is built already (:func:`prepare_early`): its expected time is its LP and
    decoding only. ``aside``: the caller's list of children to collect once the program has answered
    (their answers are then not part of this one); on programs over node types, with a second CPU likely
    free, it gets the strong rule run whole in a child process when the program is built
    (:func:`~optalloc.anytime.strong_tail.strong_beside_program`), and the child placing the strong rule's
    tail when the program fits after the first rule: marked ``beside_program`` (``insure``, the caller runs
    no child of its own, and :func:`~optalloc.anytime.timing.tail_beside_program`) it goes on beside the
    program and the better answer wins; unmarked, it is the fallback until the program starts, then ended.
    """
    rule = _warm_rule(options)
    scratch = _from_scratch(problem, options)
    grouped = len(problem.nodes) > EXACT_NODES  # the program runs over node types
    plans = [
        (options.portfolio.strong_rule, options.order),
        ("first-fit", "gpu-first"),
        (rule, "gpu-first"),
        ("first-fit", options.order),
        (rule, options.order),
    ]
    opening = (_first_rule(problem, options), options.order)
    candidates = dict.fromkeys([opening, *(plans if scratch else []), (rule, "largest-demand-first")])
    start = budget.clock()
    answers: list[Allocation] = []
    insurable = aside is not None and grouped and insure  # a child's tail answer can go on beside the program
    beside = (
        _strong_at_once(problem, options, budget, future, opening[0], built=built, insurable=insurable)
        if scratch
        else None
    )
    tail_after = False  # the strong rule places the tail after the others (no second CPU)
    share = math.inf
    first = program = 0.0
    # While the program has time to run after the heuristics, they leave it most of the budget; when it
    # has none (a short budget, or a loaded machine: see Budget.pace), the heuristics may use all of it.
    margin = 2.0
    try:
        for i, (name, order) in enumerate(candidates):
            spent = budget.clock() - start
            if i == 0:
                pass
            elif name == options.portfolio.strong_rule:
                # The strong rule costs a few runs of the first. When the program cannot run, it runs while
                # that leaves half the time; when the program can, the program goes first (on the openb lists
                # its first answers place more) unless the time holds twice both.
                strong = options.portfolio.strong_cost * first
                if not budget.expired(margin * strong if math.isinf(share) else 2 * (strong + program)):
                    if aside is not None and built and grouped and not math.isinf(share):
                        child = strong_beside_program(
                            problem, options, budget, first, name, order, future, first_rule=opening[0], expected=strong
                        )
                        if child is not None:
                            aside.append(child)
                            break  # the cheap rules would take the time the child gives the program
                elif math.isinf(share):
                    # No time for it whole nor for the program: it places the tail of the queue, beside the
                    # cheap rules in a child process when a second CPU is likely free, else after them.
                    if beside is None:
                        beside = strong_beside(
                            problem, options, budget, first, name, order, future, first_rule=opening[0]
                        )
                        tail_after = beside is None
                    continue
                else:
                    continue
            elif spent + first > share or budget.expired(
                first + (0.0 if beside is None else transfer(problem, budget))
            ):
                # (with a child beside, its answer must find the parent reading by the time the child sends it:
                # a cheap run ending at the deadline left the answer in the pipe, read 0.1 s past it)
                break
            # The strong rule run whole hands what it has not reached by then back to the first rule.
            hurry = (
                hurried(_first_rule(problem, options), 0, budget.deadline, budget.deadline, first, len(problem.jobs))
                if i > 0 and name == options.portfolio.strong_rule and budget.limited
                else None
            )
            answers.append(run_heuristic(problem, options, budget, rule=name, order=order, future=future, head=hurry))
            if i == 0:
                first = budget.clock() - start
                # The program's run to its answers: on programs over node types, two LP vertices each decoded.
                vertices = 2 if grouped else 1
                setup = exact_setup(problem, options.portfolio, built=built)
                program = budget.pace * vertices * (setup + first_decode(problem))
                insured = insurable and beside is not None and tail_beside_program(options, budget, first)
                if budget.limited and not first_answer_fits(
                    problem, options, budget, first, built=built, insured=insured
                ):
                    share, margin = math.inf, 1.0  # no program after the heuristics: they have the whole budget
                elif budget.limited:
                    # The others get a share of what twice the program's expected time leaves.
                    share = first + options.portfolio.warm_start_share * max(0.0, budget.left() - 2 * program)
                    if beside is not None and aside is not None:
                        # (not insured, it is ended once the program starts: until then it is the fallback)
                        beside.beside_program = insured
                        aside.append(beside)
                    elif beside is not None:  # started on the unloaded forecast, which the first run belied
                        beside.close()
                    beside = None
        if beside is not None:
            answers.extend(beside.collect(budget))
    finally:
        if beside is not None:  # not the caller's: ended here whatever happened (a second close does nothing)
            beside.close()
    if tail_after and (head := strong_head(problem, options, budget, first, rule=opening[0], until=budget.deadline)):
        strong_rule = options.portfolio.strong_rule
        answers.append(run_heuristic(problem, options, budget, rule=strong_rule, future=future, head=head))
    best = max(answers, key=scorer(problem, future, options))
    # What each candidate placed (rule/order: objective), for whoever asks why this one won.
    tried = {f"{a.method}/{a.stats.get('order')}": a.objective for a in answers}
    return best.replace(
        stats={**best.stats, "portfolio_time": round(budget.clock() - start, 4), "portfolio_candidates": tried}
    )


def _strong_at_once(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    future: FutureValue | None,
    first_rule: str,
    *,
    built: bool,
    insurable: bool = False,
) -> Beside | None:
    """The strong rule on the tail of the queue in a child process started before the first rule runs,
    when the budget, by the unloaded forecast of the first rule's run (``pace_jobs_per_second``), holds
    neither the program after it nor the strong rule whole, and the machine is not busier than the pace
    at which a child is started after the first run (:func:`_machine_busy`). Started after the first
    rule's run, as :func:`best_heuristic` otherwise does, the child loses that run's time: on the openb
    default list at 1 s, a fifth of the budget, and the tail the strong rule places shrinks from about
    half the queue to two fifths. When the first run shows that the program fits after all, the child
    is ended once the program starts (``built``: the program is built already, only its LP and decoding
    are left). ``insurable``: the child may go on beside the program (:func:`best_heuristic`); then it
    starts when the program fits too, if the strong rule could place half the queue or more
    (:func:`~optalloc.anytime.timing.tail_beside_program`; the better answer wins), or if the program
    fits only on an idle machine (not at ``IDLE_PACE``): when the first run then says it does not fit,
    the tail is the answer. On openb_like at 10,000 nodes and 5 s the program fits only on an idle
    machine: its first answer is worth 49.41M when it fits; when it does not, first-fit alone 48.47M
    (the time left after it holds too little of the strong rule's tail) and first-fit with the tail
    started at once 48.67-48.81M (idle and under load), the child slowing the first run by 6%."""
    if not budget.limited or options.deterministic or not problem.jobs:
        return None
    config = options.portfolio
    first = len(problem.jobs) / config.pace_jobs_per_second  # the first rule's run, unloaded
    if not budget.expired(first + config.strong_cost * first):
        return None  # the strong rule whole may fit after the first run: best_heuristic decides then
    if first_answer_fits(problem, options, budget, first, built=built, ahead=first):
        # The program may fit: with the child going on beside it, it starts when the tail may beat the
        # program's first answer, or when the program fits only on an idle machine (it is then the answer).
        slow = IDLE_PACE * first
        surely = first_answer_fits(problem, options, budget, slow, built=built, ahead=slow, pace=IDLE_PACE)
        if not insurable or (surely and not tail_beside_program(options, budget, first, ahead=first)):
            return None
    if _machine_busy():
        return None
    return strong_beside(
        problem, options, budget, first, config.strong_rule, options.order, future, first_rule=first_rule
    )


def _machine_busy() -> bool:
    """Whether the machine is too busy for a child beside the first rule, judged before any run measured
    the pace: a load average (the last minute) of ``SPARE_CPU_PACE`` times the usable CPUs or more (about
    the load at which the simple rules run that many times slower, when a child is no longer started
    after the first run either). A single usable CPU is :func:`strong_beside`'s own check."""
    import os

    from optalloc.core.cpus import usable_cpus
    from optalloc.models.exact import SPARE_CPU_PACE

    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return load >= SPARE_CPU_PACE * usable_cpus()


def _from_scratch(problem: Problem, options: SolveOptions) -> bool:
    """Whether ``problem`` is a plan from scratch: nothing runs yet and no fragmentation guide is asked."""
    running = problem.current is not None and bool(problem.current.placements)
    return not running and options.fragmentation_guide <= 0


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
