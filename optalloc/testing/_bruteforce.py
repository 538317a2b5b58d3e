"""The optimum of a tiny problem by exhaustive search, written independently of the engines.

It enumerates every way to place each job — left out, or any replica count from ``min_replicas``
to ``replicas`` on any nodes and GPUs (GPUs in the same state taken as interchangeable, replicas of
a job as unordered) — and keeps the allocation that maximises ``evaluate(problem, a).total``. A
branch is cut only when even placing every remaining job whole could not beat the best found
(penalties are never negative, so this bound is exact). Exponential: for a handful of jobs and
nodes, which is what golden instances and property tests use.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from optalloc.core import (
    Allocation,
    OptallocError,
    Placement,
    Problem,
    Reason,
    Status,
    Unplaced,
    evaluate,
    verify,
)
from optalloc.testing._ledger import Choice, Ledger, least

log = logging.getLogger(__name__)

__all__ = ["SearchTooLarge", "brute_force", "place_all"]


class SearchTooLarge(OptallocError):
    """The exhaustive search visited more than its budget of nodes: the problem is not tiny."""


def brute_force(problem: Problem, *, keep_running: bool = False, budget: int = 2_000_000) -> Allocation:
    """A proven-optimal allocation of a tiny ``problem``, found by exhaustive search.

    ``keep_running``: running jobs (``problem.current``) stay exactly where they run (nodes and
    GPUs), as the engines do by default (``allow_migration=False``); otherwise only the
    non-preemptible ones stay, and the others may move (each replica that changes node or GPUs at
    the migration cost) or stop. ``budget``: search nodes to visit before giving up with
    :class:`SearchTooLarge`.

    Returns status ``optimal`` with ``objective == bound ==`` the optimum, or status ``infeasible``
    when no valid allocation exists (a running job that may not move no longer fits).
    """
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: {budget!r} is not a positive integer")
    weights = problem.weights
    values = [int(v) for v in problem.replica_value]
    ledger = Ledger(problem)
    before, running_ids = _running(problem)
    pinned = {j for j in before if keep_running or not problem.jobs[j].preemptible}

    # Jobs that may not move hold exactly what they hold now: booked once, outside the search.
    fixed = _book_pinned(problem, ledger, pinned)
    if fixed is None:
        return _infeasible(problem, "a running job that may not move no longer fits where it runs")
    primary0 = sum(values[problem.job_index[p.job]] for p in fixed)
    penalty0 = 0
    if not weights.lexicographic:
        for j in pinned:
            if problem.jobs[j].replicas > 1:
                penalty0 += weights.spread * (len({n for n, _ in before[j]}) - 1)

    # Movable running jobs first, each without GPU symmetry (staying on its own GPUs is free, moving
    # to an equivalent one is not); then the new jobs, for which GPUs in equal states are interchangeable.
    free = [j for j in range(len(problem.jobs)) if j not in pinned]
    order = sorted(free, key=lambda j: (j not in before, -values[j] * problem.jobs[j].replicas))
    potential = [0] * (len(order) + 1)
    for k in range(len(order) - 1, -1, -1):
        potential[k] = potential[k + 1] + values[order[k]] * problem.jobs[order[k]].replicas

    best_total: int | None = None
    best: list[tuple[int, list[Choice]]] = []
    chosen: list[tuple[int, list[Choice]]] = []
    explored = 0

    def rec(k: int, primary: int, penalty: int) -> None:
        nonlocal best_total, best, explored
        explored += 1
        if explored > budget:
            raise SearchTooLarge(f"brute force visited more than {budget} nodes; the problem is not tiny")
        if not weights.lexicographic and k == len(order):
            penalty += weights.fragmentation * ledger.partial
        if best_total is not None and primary + potential[k] - penalty <= best_total:
            return
        if k == len(order):
            best_total, best = primary - penalty, [(j, list(a)) for j, a in chosen]
            return
        j = order[k]
        job = problem.jobs[j]
        for count in range(job.replicas, least(job) - 1, -1):
            for assignment in ledger.assignments(job, count, symmetric=j not in before):
                cost = 0
                if not weights.lexicographic:
                    if job.replicas > 1:
                        cost += weights.spread * (len({node for node, _ in assignment}) - 1)
                    if j in before:
                        now = Counter((node, tuple(sorted(gpus))) for node, gpus in assignment)
                        cost += weights.migration * sum((before[j] - now).values())
                chosen.append((j, assignment))
                rec(k + 1, primary + values[j] * count, penalty + cost)
                chosen.pop()
        # Leaving a running job out stops it: every one of its replicas restarts later.
        stop = weights.migration * sum(before[j].values()) if j in before and not weights.lexicographic else 0
        rec(k + 1, primary, penalty + stop)

    rec(0, primary0, penalty0)
    if best_total is None:  # pragma: no cover - leaving every free job out is always possible
        return _infeasible(problem, "no valid allocation exists")
    placements = list(fixed)
    for j, assignment in sorted(best):
        job = problem.jobs[j]
        # A replica that stays where it runs keeps its index; the others take the lowest free ones.
        spare = {where: list(ids) for where, ids in running_ids[j].items()}
        kept = []
        for node, gpus in sorted(assignment):
            where = (node, tuple(sorted(gpus)))
            kept.append(spare[where].pop(0) if spare.get(where) else None)
        free_ids = iter(sorted(set(range(job.replicas)) - {r for r in kept if r is not None}))
        for (node, gpus), replica in zip(sorted(assignment), kept, strict=True):
            number = replica if replica is not None else next(free_ids)
            placements.append(Placement(job.name, number, problem.nodes[node].name, gpus, job.per_gpu_milli))
    placed = {j for j, _ in best} | pinned
    unplaced = [
        Unplaced(job.name, Reason.NOT_SELECTED if problem.hostable(j) else Reason.FITS_NO_NODE)
        for j, job in enumerate(problem.jobs)
        if j not in placed
    ]
    answer = Allocation(
        tuple(placements),
        tuple(unplaced),
        method="brute-force",
        status=Status.OPTIMAL,
        objective=best_total,
        bound=best_total,
        stats={"explored": explored},
    )
    check = evaluate(problem, answer).total
    if check != best_total:
        raise AssertionError(f"brute force counted objective {best_total}, evaluate() says {check}")
    log.debug("brute force: optimum %s after %d search nodes", best_total, explored)
    return answer


def _running(problem: Problem) -> tuple[dict[int, Counter[Choice]], dict[int, dict[Choice, list[int]]]]:
    """Where each running job's replicas run — (node index, sorted GPU indices) -> count — and their numbers."""
    before: dict[int, Counter[Choice]] = defaultdict(Counter)
    ids: dict[int, dict[Choice, list[int]]] = defaultdict(lambda: defaultdict(list))
    if problem.current is not None:
        node_at = problem.node_index
        for p in problem.current.placements:
            j = problem.job_index[p.job]
            where = (node_at[p.node], tuple(sorted(p.gpus)))
            before[j][where] += 1
            ids[j][where].append(p.replica)
    return before, ids


def _book_pinned(problem: Problem, ledger: Ledger, pinned: set[int]) -> list[Placement] | None:
    """Book the current placements of the ``pinned`` jobs; None when they are not valid together."""
    if problem.current is None or not pinned:
        return []
    names = {problem.jobs[j].name for j in pinned}
    fixed = [p for p in problem.current.placements if p.job in names]
    rest = tuple(Unplaced(j.name, Reason.NOT_SELECTED) for j in problem.jobs if j.name not in names)
    if verify(problem, Allocation(tuple(fixed), rest)):
        return None
    for p in fixed:
        ledger.take_placement(p)
    return fixed


def _infeasible(problem: Problem, why: str) -> Allocation:
    return Allocation(
        unplaced=tuple(Unplaced(j.name, Reason.INSUFFICIENT_CAPACITY, why) for j in problem.jobs),
        method="brute-force",
        status=Status.INFEASIBLE,
    )


def place_all(problem: Problem, *, budget: int = 200_000) -> Allocation | None:
    """An allocation placing every job (at least ``min_replicas`` each), or None when none exists.

    Non-preemptible running jobs stay exactly where they run (nodes and GPUs). Exhaustive (with the same symmetry breaking
    as :func:`brute_force`): None is a proof; :class:`SearchTooLarge` past ``budget`` search nodes.
    """
    ledger = Ledger(problem)
    before, _ = _running(problem)
    fixed = _book_pinned(problem, ledger, {j for j in before if not problem.jobs[j].preemptible})
    if fixed is None:
        return None
    held = {p.job for p in fixed}
    # Most constrained first: the largest demands.
    order = sorted(
        (j for j in range(len(problem.jobs)) if problem.jobs[j].name not in held),
        key=lambda j: -least(problem.jobs[j]) * (problem.jobs[j].gpu_demand + 1),
    )
    chosen: list[tuple[int, list[Choice]]] = []
    explored = 0

    def rec(k: int) -> bool:
        nonlocal explored
        explored += 1
        if explored > budget:
            raise SearchTooLarge(f"place_all visited more than {budget} nodes; the problem is not tiny")
        if k == len(order):
            return True
        j = order[k]
        job = problem.jobs[j]
        for count in range(least(job), job.replicas + 1):
            for assignment in ledger.assignments(job, count):
                chosen.append((j, assignment))
                if rec(k + 1):
                    return True
                chosen.pop()
        return False

    if not rec(0):
        return None
    placements = fixed + [
        Placement(problem.jobs[j].name, r, problem.nodes[n].name, gpus, problem.jobs[j].per_gpu_milli)
        for j, assignment in chosen
        for r, (n, gpus) in enumerate(assignment)
    ]
    return Allocation(tuple(placements), method="place-all", status=Status.FEASIBLE)
