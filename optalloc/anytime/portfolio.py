"""The heuristics' portfolio of ``auto`` and the exact methods: one rule's run (which also measures the
machine's pace), and the best of a few rules within the budget, with the strong rule's tail in a child
process beside them or beside the program (:mod:`optalloc.anytime.strong_tail`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from optalloc.anytime.repair import scorer
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
    first_rule_time,
    tail_beside_program,
)
from optalloc.core import Allocation, FutureValue, MethodUnavailable, Problem
from optalloc.core.budget import Budget
from optalloc.core.options import SolveOptions

log = logging.getLogger(__name__)


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
        budget.observe_pace(first_rule_time(problem, options.portfolio, decided), budget.clock() - started)
    budget.improve(answer.method or rule, objective=answer.objective)
    return answer


#: The rules whose unloaded speed ``PortfolioConfig.pace_jobs_per_second`` gives (the pace's yardstick).
PACE_RULES = frozenset({"best-fit", "first-fit", "worst-fit"})


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
    make_room: Callable[[], None] | None = None,
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
    ``make_room`` (with ``insure`` False: the program's own child holds the second CPU): when the first run
    shows the program fits only with the tail's child beside it, that child is started all the same, after
    ``make_room`` ends the program's child.
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
    # (or can after the first run, once make_room has ended the program's own child)
    late_insurable = aside is not None and grouped and (insure or make_room is not None)
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
                            problem, options, budget, first, name, order, future, first_rule=opening[0], alone=True
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
                tail_may_beat = late_insurable and tail_beside_program(options, budget, first)
                insured = insurable and tail_may_beat and beside is not None
                fits = not budget.limited or first_answer_fits(
                    problem, options, budget, first, built=built, insured=insured
                )
                # Only the insurance missing (no child before the first run: the program's own child solving its
                # second vertex, the load average saying the machine was busy, or the forecast that the program
                # fits for sure): the tail's child starts now, beside the program (the program's own child
                # ended first: three processes on two CPUs), rather than the program giving way to the cheap
                # rules (openb_like at 10,000 nodes and 10 s: 95.13% of the GPUs against the program's 96.88%,
                # when first-fit took 2.1 s).
                late = not fits and tail_may_beat and beside is None
                if late and first_answer_fits(problem, options, budget, first, built=built, insured=True):
                    strong_rule, room = options.portfolio.strong_rule, None if insure else make_room
                    beside = strong_beside(
                        problem,
                        options,
                        budget,
                        first,
                        strong_rule,
                        options.order,
                        future,
                        first_rule=opening[0],
                        make_room=room,
                    )
                    insured = fits = beside is not None
                log.debug(
                    "first rule %.3fs (pace %.2f, %.3fs left): program fits %s, insured %s",
                    first,
                    budget.pace,
                    budget.left(),
                    fits,
                    insured,
                )
                if not fits:
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
    if tail_after and (
        head := strong_head(problem, options, budget, first, rule=opening[0], until=budget.deadline, alone=True)
    ):
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
    # The first rule's run, unloaded, at one speed whatever the size (not first_rule_time): the tail's sizing and
    # its hand-back were measured on this forecast, and with the sized one 20k x 150k at 10 s lost its tail
    # (docs/anytime.md).
    first = len(problem.jobs) / config.pace_jobs_per_second
    if not budget.expired(first + config.strong_cost * first):
        return None  # the strong rule whole may fit after the first run: best_heuristic decides then
    # (with the child going on beside it, the program's first answer alone must fit: then the child's tail is
    # sized to share the machine with it, not as the answer)
    may_beat = tail_beside_program(options, budget, first, ahead=first)
    insured = insurable and may_beat
    program_may_run = first_answer_fits(problem, options, budget, first, built=built, ahead=first, insured=insured)
    if first_answer_fits(problem, options, budget, first, built=built, ahead=first):
        # The program may fit: with the child going on beside it, it starts when the tail may beat the
        # program's first answer, or when the program fits only on an idle machine (it is then the answer).
        slow = IDLE_PACE * first
        surely = first_answer_fits(problem, options, budget, slow, built=built, ahead=slow, pace=IDLE_PACE)
        if not insurable or (surely and not may_beat):
            return None
    if _machine_busy():
        return None
    return strong_beside(
        problem,
        options,
        budget,
        first,
        config.strong_rule,
        options.order,
        future,
        first_rule=first_rule,
        alone=not program_may_run,
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
