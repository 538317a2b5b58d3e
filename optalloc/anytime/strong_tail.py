"""The strong heuristic on the tail of the queue: when the strong rule (fgd-plus) cannot place every job
in a budget and the exact program cannot run, the first rule places the head of the queue and the strong
rule the rest (its choices matter most once the cluster fills), in a forked child process beside the
cheap rules when a second CPU is likely free. ``optalloc.anytime.best_heuristic`` uses it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from optalloc.anytime.timing import IDLE_PACE
from optalloc.core import Allocation, FutureValue, Problem
from optalloc.core.budget import Budget
from optalloc.core.options import SolveOptions
from optalloc.core.packed import PackedAllocation, pack_if_named

if TYPE_CHECKING:
    from optalloc.models.forked import Stream

log = logging.getLogger(__name__)

#: Seconds the answer of a heuristic run in a child process takes to reach the parent: a constant and a
#: cost per job. Sent packed (``optalloc.core.packed``): 40-55 ms for the 8,152 pods of the openb default
#: list, 0.3-0.4 s for 70,000 jobs on 10,000 nodes, the child's exit included (pickled whole it took
#: 50-130 ms and 0.5-0.9 s, more than the 8e-6 per job charged then).
TRANSFER_BASE, TRANSFER_PER_JOB = 0.02, 6e-6
#: The share of the queue the strong rule places first, timing itself, before the head is sized (Head.probe),
#: when the forecast gives it ``PROBE_FROM`` of the queue or more (with less, the rule whole is out of reach
#: and the probe's jobs would only shorten its tail: on the default list at 0.5 s, a tail of a quarter of
#: the queue, it placed 5.83-5.87M against 5.85-5.88M without).
PROBE_SHARE, PROBE_FROM = 0.03, 0.5
#: How many times its own first run the first rule is given to place what the strong rule did not reach.
HURRY_FACTOR = 2.0
#: What the first rule needs to take the queue back beyond its time per job, as a share of its whole run:
#: a fresh placer, and each job class scoring every node once (without it, a hand-back near the end of
#: the queue left 16-32 of 8,000 jobs undecided: 1 ms of reserve for 16 jobs against 3.5 ms to start).
HAND_BACK_SETUP = 0.1


class Beside:
    """A heuristic run in a forked child process (``optalloc.models.forked.Stream``) while the caller
    runs others. ``until``: when its answer is due (fixed when it starts, for a pace up to
    ``IDLE_PACE``: :func:`due`); :meth:`collect` waits for it until then, or the budget's deadline if
    that comes first, and ends the child. ``beside_program``: it goes on while the caller runs the exact
    program (else it is ended when the program starts; until then it is the caller's fallback).
    ``to_deadline``: it may work until its answer is due at the deadline (the strong rule's tail),
    rather than end well before it (the strong rule run whole, handed back by a forecast)."""

    def __init__(
        self,
        stream: Stream,
        rule: str,
        until: float,
        problem: Problem,
        *,
        beside_program: bool = False,
        to_deadline: bool = False,
    ) -> None:
        self.stream, self.rule, self.until, self.problem = stream, rule, until, problem
        self.beside_program, self.to_deadline = beside_program, to_deadline

    def close(self) -> None:
        """End the child now (its answer, if any, is dropped)."""
        self.stream.close()

    def collect(self, budget: Budget) -> list[Allocation]:
        """The child's answer (none if it has not come by its own deadline or the budget's, whichever is
        first), the child ended."""
        stream = self.stream
        got: list[object] = []
        until = min(self.until, budget.deadline)
        try:
            while not got and stream.running:
                wait = until - budget.clock()
                if wait <= 0 or budget.stopped:
                    break
                got = stream.receive(wait=min(wait, 0.05))
        finally:
            got += stream.close()
        unpacked = [a.unpack(self.problem) if isinstance(a, PackedAllocation) else a for a in got]
        answers = [a for a in unpacked if isinstance(a, Allocation)]
        for answer in answers:
            budget.improve(answer.method or self.rule, objective=answer.objective)
        return answers


def strong_beside(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    first: float,
    rule: str,
    order: str,
    future: FutureValue | None,
    *,
    first_rule: str,
    make_room: Callable[[], None] | None = None,
    alone: bool = False,
) -> Beside | None:
    """The strong rule on the tail of the queue (:func:`strong_head`) in a child process, with the time
    left less its answer's way back, when a second CPU is likely free and a process can be forked.
    ``make_room``: called once the child is sure to be wanted, before it forks (to end another child that
    holds the second CPU). ``alone``: the program is not expected to run (the tail's answer is likely the
    answer): the tail is sized on ``strong_fill_alone`` of the time left, not ``strong_fill``."""
    from optalloc.core.cpus import usable_cpus
    from optalloc.models.exact import SPARE_CPU_PACE

    if options.deterministic or usable_cpus() < 2 or budget.pace >= SPARE_CPU_PACE:
        return None
    end = due(budget)
    until = end - transfer(problem, budget)
    head = strong_head(problem, options, budget, first, rule=first_rule, until=until, alone=alone)
    if head is None:
        return None
    if make_room is not None:
        make_room()
    stream = _fork(problem, options, rule, order, future, head)
    return None if stream is None else Beside(stream, rule, end, problem, to_deadline=True)


def strong_beside_program(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    first: float,
    rule: str,
    order: str,
    future: FutureValue | None,
    *,
    first_rule: str,
    expected: float,
) -> Beside | None:
    """The strong rule, whole, in a child process while the caller goes on with the program (built
    already, :func:`optalloc.anytime.prepare_early`), when a second CPU is likely free: the program's
    LP, decoding and neighbourhood search get the second or so it takes (on the openb default list at
    10 s, 1.5 s of fgd-plus). ``expected``: the strong rule's forecast run time here and now; the child
    hands the queue back to the first rule by three times that (leaving the first rule twice its time
    for the jobs still to decide) and answers by four times it (or the deadline): twice and three times
    while the forecast was 8 first-rule runs, about the same slack at 6."""
    from optalloc.core.cpus import usable_cpus
    from optalloc.models.exact import SPARE_CPU_PACE

    if options.deterministic or usable_cpus() < 2 or budget.pace >= SPARE_CPU_PACE:
        return None
    now = budget.clock()
    until = min(due(budget) - transfer(problem, budget), now + 4 * expected)
    hand_back = hurried(first_rule, 0, min(now + 3 * expected, until), until, first, len(problem.jobs))
    stream = _fork(problem, options, rule, order, future, hand_back)
    return (
        None
        if stream is None
        else Beside(stream, rule, until + transfer(problem, budget), problem, beside_program=True)
    )


def due(budget: Budget) -> float:
    """When a child's answer is due: the budget's deadline should the pace rise to ``IDLE_PACE`` (or stay
    where it is, when higher). A child started before the first run, at pace 1, and due at the deadline
    then, had its answer dropped when the first run measured a pace of 1.5 (an idle machine, some days)
    and the deadline moved earlier by the verification's reserve stretched by it."""
    return budget.deadline_at(max(budget.pace, IDLE_PACE))


def transfer(problem: Problem, budget: Budget) -> float:
    """Seconds a heuristic's answer takes from a child process to the parent (stretched by the pace)."""
    return budget.pace * (TRANSFER_BASE + TRANSFER_PER_JOB * len(problem.jobs))


def _fork(
    problem: Problem, options: SolveOptions, rule: str, order: str, future: FutureValue | None, head: Head
) -> Stream | None:
    """``rule`` (with ``head``) run in a forked child process that sends its answer; None when no process
    can be forked (a process limit)."""
    from optalloc import heuristics
    from optalloc.models.forked import Stream

    def work(send: Callable[[object], None]) -> None:
        answer = heuristics.allocate(
            problem,
            rule=rule,
            order=order,
            seed=options.seed,
            round=options.round,
            future=future,
            deadline=head.deadline,
            head_rule=head.rule,
            head_jobs=head.jobs,
            rule_until=head.until,
            head_per_job=head.per_job,
            probe_jobs=head.probe,
        )
        send(pack_if_named(problem, answer))  # arrays of indices: a few ms where the pickled answer took 0.1 s

    try:
        return Stream(work)
    except OSError as err:
        log.warning("the strong rule runs in this process: cannot fork (%s)", err)
        return None


@dataclass(frozen=True)
class Head:
    """The head of the queue placed by ``rule`` (``jobs`` jobs), the rest by the strong rule until
    ``until`` (a ``time.perf_counter()`` value) less ``per_job`` seconds for each job still to decide,
    then by ``rule`` again; all by ``deadline``. ``probe``: the strong rule places the first ``probe``
    jobs first and, from the pace it measured, either goes on to the end or sizes the head anew
    (``optalloc.heuristics.allocate(probe_jobs=)``)."""

    rule: str
    jobs: int
    until: float
    deadline: float
    per_job: float = 0.0
    probe: int = 0


def strong_head(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    first: float,
    *,
    rule: str,
    until: float,
    alone: bool = False,
) -> Head | None:
    """When the strong rule cannot place every job in the time left and the program cannot run: the
    first rule (``rule``) for the head of the queue, the strong rule for the rest, the head as short as
    the time to ``until`` allows (the strong rule's choices matter most once the cluster fills: see
    :func:`optalloc.heuristics.allocate`; on the openb lists at about fgd's cost it places more than
    fgd); the strong rule hands what it did not reach back to the first rule in time for it to finish.
    None when the strong rule would get less than ``PortfolioConfig.strong_tail`` of the queue.

    The hand-back is reckoned as the strong rule goes: it comes once the time left to ``until`` is
    ``HURRY_FACTOR`` times what the first rule takes for the jobs still to decide (at its pace in
    ``first``), not that for the whole tail fixed at the start; on the openb default list at 1 s the
    fixed one handed the last tenth of the queue back with a fifth of the budget unused.

    The tail is sized on ``PortfolioConfig.strong_fill`` of the time left, or ``strong_fill_alone`` when
    the program is not expected to run (``alone``): then nothing beside the child needs the second CPU,
    and the hand-back, not the share, keeps the deadline."""
    jobs = max(len(problem.jobs), 1)
    per_job = options.portfolio.strong_cost * first / jobs  # the strong rule's seconds per job
    left = until - budget.clock()
    fill = options.portfolio.strong_fill_alone if alone else options.portfolio.strong_fill
    tail = int(fill * max(left, 0.0) / max(per_job, 1e-9))
    if tail < options.portfolio.strong_tail * jobs:
        return None
    tail = min(tail, jobs)
    head = hurried(rule, jobs - tail, until, until, first, jobs)
    # The forecast above is the unloaded one stretched by the pace so far; the strong rule's own pace, measured on the
    # first jobs, says whether it can place them all (then its answer is the strong rule's whole).
    probe = int(PROBE_SHARE * jobs) if head.jobs > 0 and tail >= PROBE_FROM * jobs else 0
    return replace(head, probe=probe)


def hurried(rule: str, head_jobs: int, until: float, deadline: float, first: float, jobs: int) -> Head:
    """The :class:`Head` that hands the queue back to ``rule`` in time to finish it by ``until``: ``rule``
    keeps ``HURRY_FACTOR`` times its time for a fresh start (``HAND_BACK_SETUP`` of its whole run,
    ``first`` seconds for ``jobs`` jobs) and for each job still to decide."""
    reserve = HURRY_FACTOR * HAND_BACK_SETUP * first
    return Head(rule, head_jobs, until - reserve, deadline, HURRY_FACTOR * first / max(jobs, 1))
