"""``allocate``: a queue ordering and a placement rule, one job at a time (skip-and-continue)."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from optalloc.core import (
    Allocation,
    ClusterState,
    FutureValue,
    Job,
    Placement,
    Problem,
    ProblemError,
    Reason,
    Status,
    Unplaced,
    Workload,
)
from optalloc.core.future_value import HELD_BACK_DETAIL
from optalloc.core.objective import evaluate_placements
from optalloc.core.state import allocation_of, unplaced_of
from optalloc.heuristics.orders import order as queue_order
from optalloc.heuristics.placer import Placer
from optalloc.heuristics.registry import get_rule

log = logging.getLogger(__name__)


#: Jobs decided between two looks at the clock when a time limit is set.
CLOCK_EVERY = 16
#: Seconds kept back from a deadline per placement made, for building and scoring the answer.
FINISH_PER_PLACEMENT = 3e-6
#: Seconds kept back per job still to decide, for listing it as undecided.
FINISH_PER_JOB = 1e-6
#: A rule's time per job over a whole queue, as a share of its time on the first 3% (``probe_jobs``): the
#: first placements meet new node states, later ones mostly known ones; fgd-plus 0.67-0.80 in a process
#: alone on the three openb lists and openb_like at 2,000 and 5,000 nodes, 0.59-0.65 in ``auto``'s child
#: (its first jobs also pay the fork's copy-on-write).
PROBE_RATE = 0.7
#: After the probe the rule goes on when, at that pace, it reaches this share of the queue by
#: ``rule_until``; what it does not reach is handed back to the head rule. On the openb lists and
#: openb_like at 1,213 and 2,000 nodes, fgd-plus for the first 90% of the queue and first-fit for the
#: rest placed 0.13% below fgd-plus whole to 0.02% above it, first-fit for the first quarter and
#: fgd-plus for the rest 0.23-0.45% below (fgd-plus for the first 80%: 0.07-0.60% below).
PROBE_REACH = 0.9
#: A first look after a quarter of the probe: the rule hands over at once when, at that pace, it would not
#: reach this share of ``PROBE_REACH``.
PROBE_EARLY = 0.5
#: When the rule cannot go on, the share of the time left its tail gets (the head rule the rest; as
#: ``PortfolioConfig.strong_fill``).
PROBE_FILL = 0.8


def allocate(
    problem: Problem,
    *,
    rule: str,
    order: str = "fcfs",
    seed: int = 0,
    round: int = 0,
    workload: Workload | None = None,
    reference: Sequence[Job] | None = None,
    future: FutureValue | None = None,
    time_limit: float | None = None,
    deadline: float | None = None,
    tie_break: str = "name",
    head_rule: str | None = None,
    head_jobs: int = 0,
    rule_until: float | None = None,
    head_per_job: float = 0.0,
    probe_jobs: int = 0,
) -> Allocation:
    """Allocate ``problem`` greedily: jobs in ``order``, each placed by ``rule`` or skipped.

    Jobs running in ``problem.current`` stay exactly where they are and are not placed again.
    Every other job is placed whole (all replicas of a gang; between ``min_replicas`` and
    ``replicas`` of an elastic job) or left out with reason ``fits no node`` (it would not fit even
    the empty cluster) or ``insufficient capacity`` (it fits the empty cluster, not what is left);
    the next job is then tried. ``seed`` drives the random rule; ``round`` rotates round-robin.
    ``workload`` / ``reference``: see :class:`Placer` (the job mix the fgd rules expect).
    ``future``: admission control (:class:`Placer`); a share it holds back is left out with reason
    ``held back``. ``tie_break``: which of equally scored nodes wins, ``name`` (default: a seeded order
    of the node names, so that listing the nodes in another order gives the same answer) or ``index``
    (the first in the node list); see :func:`optalloc.heuristics.placer.node_keys`.

    ``head_rule`` and ``head_jobs``: the first ``head_jobs`` jobs of the queue are placed by
    ``head_rule`` (a fast one), the rest by ``rule`` on what they leave. A costly rule's choices matter
    most once the cluster fills: on the openb default list, first-fit for the first 30% of the pods
    and fgd-plus for the rest places within 0.3% of fgd-plus alone in two thirds of its time. The
    answer's method is then ``"{head_rule}+{rule}"``. ``rule_until`` (a ``time.perf_counter()`` value,
    with ``head_rule``): from then on ``head_rule`` places the rest of the queue too, so that a costly
    rule that would not reach the deadline leaves the fast one the time to decide every job
    (``stats["rule_jobs"]`` counts the jobs ``rule`` decided). ``head_per_job`` (seconds, with
    ``rule_until``): the head rule's time per job; the hand-back then comes as soon as the time left
    to ``rule_until`` is less than that times the jobs still to decide, so that the head rule, given
    that time per job, places them and builds the answer by ``rule_until``, and the costly rule runs as
    long as it can. ``probe_jobs`` (with ``rule_until`` and ``head_per_job``): ``rule`` places the first
    ``probe_jobs`` jobs and times itself (no hand-back meanwhile; a first look after a quarter of them
    hands over at once when it would not reach :data:`PROBE_EARLY` of that share, and
    ``stats["probe_jobs"]`` is then that quarter); when, at the pace it measured (:data:`PROBE_RATE`
    of it), it would reach :data:`PROBE_REACH` of the queue by ``rule_until`` (less the time to build
    the answer) it goes on, and the hand-back, which keeps the head rule's time for the jobs left, comes
    a little before that share if it comes; else
    ``head_rule`` places the queue up to the job from which ``rule``, at that pace, places the rest on
    :data:`PROBE_FILL` of the time left, or up to job ``head_jobs`` if that comes first (with
    ``head_jobs`` no later than the probe, the rule goes on). ``stats["probe_jobs"]``: the jobs timed;
    ``stats["head_jobs"]``: the head after them; ``stats["rule_jobs"]`` counts them too. A probe as
    long as the queue is no probe: ``head_jobs`` is then the head.

    ``time_limit`` (seconds of wall time from the call, None = no limit) or ``deadline`` (an absolute
    ``time.perf_counter()`` value; the earlier of the two counts): when the heuristic cannot finish
    in time it stops deciding, keeps what it placed, and lists every job it did not decide with
    reason ``time limit``; ``stats["undecided"]`` counts them. The answer is still valid and its
    status ``feasible``. The clock is read every :data:`CLOCK_EVERY` jobs, and the time to build and
    score the answer is kept back from the deadline, so the call returns within the budget unless
    setting up (the ordering, the rule's workload model) alone exceeds it.
    """
    start = time.perf_counter()
    get_rule(rule)  # unknown names fail before any work
    if head_rule is not None:
        get_rule(head_rule)
    if isinstance(head_jobs, bool) or not isinstance(head_jobs, int) or head_jobs < 0:
        raise ProblemError("head_jobs", head_jobs, "is not a count of jobs (an integer >= 0)")
    stop = _deadline(start, time_limit, deadline)
    if head_rule is None and (rule_until is not None or head_jobs):
        field, value = ("rule_until", rule_until) if rule_until is not None else ("head_jobs", head_jobs)
        raise ProblemError(field, value, "needs a head_rule to place those jobs with")
    head = (head_rule, head_jobs) if head_rule is not None else None
    until = _deadline(start, None, rule_until)
    if isinstance(head_per_job, bool) or not isinstance(head_per_job, int | float) or not head_per_job >= 0:
        raise ProblemError("head_per_job", head_per_job, "is not a number of seconds >= 0")
    if head_per_job and until is None:
        raise ProblemError("head_per_job", head_per_job, "needs a rule_until to hand the queue back by")
    if isinstance(probe_jobs, bool) or not isinstance(probe_jobs, int) or probe_jobs < 0:
        raise ProblemError("probe_jobs", probe_jobs, "is not a count of jobs (an integer >= 0)")
    if probe_jobs and not head_per_job:
        raise ProblemError("probe_jobs", probe_jobs, "needs a head_per_job and a rule_until to size the head by")
    with _collector_paused():
        return _allocate(
            problem,
            rule,
            order,
            seed,
            round,
            workload,
            reference,
            future,
            tie_break,
            start=start,
            stop=stop,
            head=head,
            until=until,
            head_per_job=float(head_per_job),
            probe=probe_jobs,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the answer is built (restored after).

    A run allocates one object per placement and per job left out and no reference cycles; on a
    problem of 150,000 jobs, the collections these allocations trigger walk the whole problem again
    and again (0.2 s of 2 s for best-fit on 70,000 jobs, 0.3 s on 150,000).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _allocate(
    problem: Problem,
    rule: str,
    order: str,
    seed: int,
    round: int,
    workload: Workload | None,
    reference: Sequence[Job] | None,
    future: FutureValue | None,
    tie_break: str,
    *,
    start: float,
    stop: float | None,
    head: tuple[str, int] | None = None,
    until: float | None = None,
    head_per_job: float = 0.0,
    probe: int = 0,
) -> Allocation:
    running = problem.running_jobs
    placements: list[Placement] = list(problem.current.placements) if problem.current is not None else []
    unplaced: list[Unplaced] = []
    placed_jobs = placed_replicas = 0
    jobs = problem.jobs
    undecided = 0
    todo = queue_order(problem, order, round=round).tolist()
    # Setting up counts against the budget too: the clock is read before and after building the placer.
    if stop is not None and _late(stop, len(placements), len(todo)):
        todo, undecided = [], _time_out(problem, todo, running, unplaced)

    def placer_of(name: str, state: ClusterState | None = None) -> Placer:
        return Placer(
            problem,
            name,
            seed=seed,
            state=state,
            workload=workload,
            reference=reference,
            future=future,
            tie_break=tie_break,
        )

    # With a head rule: it places the queue up to job ``switch``, the rule from there until the clock
    # passes ``until`` less the head rule's time for the jobs left (job ``back``), the head rule again
    # from there.
    switch = min(head[1], len(todo)) if head is not None else 0
    # With a probe: the rule places the first ``probe`` jobs, then goes on or hands over to the head rule up
    # to job ``planned`` at most (sooner when its measured pace says it can place more).
    probe = probe if head is not None and until is not None and probe < len(todo) else 0
    planned, switch = switch, 0 if probe else switch
    early = probe // 4  # (a first look: a rule far too slow hands over at once)
    back = len(todo)
    placer = placer_of(head[0] if switch > 0 else rule) if todo else None  # type: ignore[index]
    probe_start = time.perf_counter() if probe else 0.0  # (the placer built: its setup is no cost per job)
    place, hostable, add = (placer.place, placer.hostable, placements.extend) if placer else (None, None, None)
    no_node, short, held = Reason.FITS_NO_NODE.value, Reason.INSUFFICIENT_CAPACITY.value, Reason.HELD_BACK.value
    for k, j in enumerate(todo):
        if stop is not None and k % CLOCK_EVERY == 0 and _late(stop, len(placements), len(todo) - k):
            undecided = _time_out(problem, todo[k:], running, unplaced)
            probe = min(probe, k)  # (stopped while timing itself: what it timed)
            break
        if probe and (k == probe or k == early > 0):
            probed = time.perf_counter() - probe_start
            reach = PROBE_REACH if k == probe else PROBE_REACH * PROBE_EARLY
            head_end = _sized_head(k, len(todo), probed, until, head_per_job, len(placements), planned, reach)  # type: ignore[arg-type]
            log.debug("%s: %d jobs probed in %.3fs; head to job %d of %d", rule, k, probed, head_end, len(todo))
            if head_end > k:  # the rule cannot place the rest in time: the head rule up to job ``head_end``
                probe, switch = k, head_end
                placer = placer_of(head[0], placer.state)  # type: ignore[index, union-attr]
                place, hostable = placer.place, placer.hostable
        if k == switch and switch > 0:
            placer = placer_of(rule, placer.state)  # type: ignore[union-attr]
            place, hostable = placer.place, placer.hostable
        if (
            until is not None
            and k >= max(switch, probe)  # (not while the rule times itself: the head is sized after)
            and back == len(todo)
            and time.perf_counter() + _hand_back(head_per_job, len(todo) - k, len(placements)) >= until
        ):
            back = k
            placer = placer_of(head[0], placer.state)  # type: ignore[index, union-attr]
            place, hostable = placer.place, placer.hostable
        if running and jobs[j].name in running:
            continue
        if not hostable(j):  # type: ignore[misc]
            unplaced.append(unplaced_of(jobs[j].name, no_node))
            continue
        got = place(j)  # type: ignore[misc]
        if got is None:
            if placer.held:  # type: ignore[union-attr]
                unplaced.append(unplaced_of(jobs[j].name, held, HELD_BACK_DETAIL))
            else:
                unplaced.append(unplaced_of(jobs[j].name, short))
            continue
        add(got)  # type: ignore[misc]
        placed_jobs += 1
        placed_replicas += len(got)
    reasons = Counter(u.reason for u in unplaced[: len(unplaced) - undecided])  # (the time-outs come last)
    stats = {
        "order": order,
        "rule": rule,
        "seed": seed,
        "round": round,
        "tie_break": tie_break,
        "jobs": len(problem.jobs),
        "running": len(running),
        "placed_jobs": placed_jobs,
        "placed_replicas": placed_replicas,
        "unplaced_jobs": len(unplaced),
        "fits_no_node": reasons[Reason.FITS_NO_NODE.value],
        "held_back": reasons[Reason.HELD_BACK.value],
        "undecided": undecided,
    }
    mixed = head is not None and (switch > 0 or back < len(todo))
    if mixed:
        ahead = probe if switch > probe else 0  # the jobs the rule placed before the head (its probe)
        stats["head_rule"], stats["head_jobs"] = head[0], switch - ahead  # type: ignore[index]
        stats["rule_jobs"] = min(ahead, len(todo) - undecided) + max(0, min(back, len(todo) - undecided) - switch)
    if probe:
        stats["probe_jobs"] = probe
    method = f"{head[0]}+{rule}" if mixed else rule  # type: ignore[index]
    placed = tuple(placements)
    objective = float(evaluate_placements(problem, placed).total)
    answer = allocation_of(
        placed,
        tuple(unplaced),
        method=method,
        status=Status.FEASIBLE,
        objective=objective,
        wall_time=time.perf_counter() - start,
        stats=stats,
    )
    if undecided:
        log.info("%s/%s: time limit after %d of %d jobs", rule, order, len(problem.jobs) - undecided, len(problem.jobs))
    log.debug("%s/%s: placed %d of %d jobs in %.3fs", rule, order, placed_jobs, len(problem.jobs), answer.wall_time)
    return answer


def _deadline(start: float, time_limit: float | None, deadline: float | None) -> float | None:
    """The earlier of ``start + time_limit`` and ``deadline`` (None: no limit); bad values are misuse."""
    out = None
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or not time_limit > 0:
            raise ProblemError("time_limit", time_limit, "is not a positive number of seconds")
        out = start + float(time_limit)
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline != deadline:
            raise ProblemError("deadline", deadline, "is not a time.perf_counter() value")
        out = float(deadline) if out is None else min(out, float(deadline))
    return out


def _sized_head(
    k: int, jobs: int, probed: float, until: float, head_per_job: float, placed: int, planned: int, reach: float
) -> int:
    """After the rule placed the first ``k`` jobs in ``probed`` seconds: the job up to which the head rule
    places the queue, so that the rule, at that pace, places the rest on ``PROBE_FILL`` of the time left
    to ``until``, and no later than ``planned`` (a short probe is noisy: 30-55 ms for the same 244 jobs in
    a child beside its parent, and a slow one alone shortened the tail by a third); ``k``: it reaches
    ``reach`` of the queue in that time, and goes on."""
    rule_per_job = PROBE_RATE * probed / max(k, 1)
    left = max(until - time.perf_counter() - _hand_back(head_per_job, 0, placed + jobs - k), 0.0)
    if k + left / max(rule_per_job, 1e-9) >= reach * jobs:
        return k
    tail = int(PROBE_FILL * left / max(rule_per_job, 1e-9))
    return max(k, min(jobs - tail, planned))


def _hand_back(per_job: float, left: int, placed: int) -> float:
    """Seconds the head rule needs to decide ``left`` jobs at ``per_job`` each, and to build and score the
    answer of about ``placed`` + ``left`` placements after (0 without a time per job: a plain
    ``rule_until``)."""
    return per_job * left + FINISH_PER_PLACEMENT * (placed + left) if per_job else 0.0


def _late(stop: float, placed: int, left: int) -> bool:
    """Whether deciding more jobs would leave too little time before ``stop`` to list the ``left``
    undecided ones and build and score the answer of ``placed`` placements."""
    return time.perf_counter() + FINISH_PER_PLACEMENT * placed + FINISH_PER_JOB * left >= stop


def _time_out(problem: Problem, rest: list[int], running: frozenset[str], unplaced: list[Unplaced]) -> int:
    """List the jobs of ``rest`` (not running) as left out for the time limit; return how many."""
    before = len(unplaced)
    reason, detail = Reason.TIME_LIMIT.value, "the heuristic stopped at its time limit before deciding it"
    names = map(problem.job_names.__getitem__, rest)
    if running:
        names = (name for name in names if name not in running)
    unplaced.extend([unplaced_of(name, reason, detail) for name in names])
    return len(unplaced) - before
