"""``allocate``: a queue ordering and a placement rule, one job at a time (skip-and-continue)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from optalloc.core import (
    Allocation,
    FutureValue,
    Job,
    Placement,
    Problem,
    Reason,
    Status,
    Unplaced,
    Workload,
    evaluate,
)
from optalloc.core.future_value import HELD_BACK_DETAIL
from optalloc.heuristics.orders import order as queue_order
from optalloc.heuristics.placer import Placer
from optalloc.heuristics.registry import get_rule

log = logging.getLogger(__name__)


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
) -> Allocation:
    """Allocate ``problem`` greedily: jobs in ``order``, each placed by ``rule`` or skipped.

    Jobs running in ``problem.current`` stay exactly where they are and are not placed again.
    Every other job is placed whole (all replicas of a gang; between ``min_replicas`` and
    ``replicas`` of an elastic job) or left out with reason ``fits no node`` (it would not fit even
    the empty cluster) or ``insufficient capacity`` (it fits the empty cluster, not what is left);
    the next job is then tried. ``seed`` drives the random rule; ``round`` rotates round-robin.
    ``workload`` / ``reference``: see :class:`Placer` (the job mix the fgd rules expect).
    ``future``: admission control (:class:`Placer`); a share it holds back is left out with reason
    ``held back``.
    """
    start = time.perf_counter()
    get_rule(rule)  # unknown names fail before any work
    queue = queue_order(problem, order, round=round)
    placer = Placer(problem, rule, seed=seed, workload=workload, reference=reference, future=future)
    running = problem.running_jobs
    placements: list[Placement] = list(problem.current.placements) if problem.current is not None else []
    unplaced: list[Unplaced] = []
    hostable: dict[tuple[Any, ...], bool] = {}
    placed_jobs = placed_replicas = 0
    for j in queue.tolist():
        spec = problem.jobs[j]
        if spec.name in running:
            continue
        key = spec.demand_key
        if key not in hostable:
            hostable[key] = problem.hostable(j)
        if not hostable[key]:
            unplaced.append(Unplaced(spec.name, Reason.FITS_NO_NODE.value))
            continue
        got = placer.place(j)
        if got is None and placer.held:
            unplaced.append(Unplaced(spec.name, Reason.HELD_BACK.value, HELD_BACK_DETAIL))
            continue
        if got is None:
            unplaced.append(Unplaced(spec.name, Reason.INSUFFICIENT_CAPACITY.value))
            continue
        placements.extend(got)
        placed_jobs += 1
        placed_replicas += len(got)
    stats = {
        "order": order,
        "rule": rule,
        "seed": seed,
        "round": round,
        "jobs": len(problem.jobs),
        "running": len(running),
        "placed_jobs": placed_jobs,
        "placed_replicas": placed_replicas,
        "unplaced_jobs": len(unplaced),
        "fits_no_node": sum(1 for u in unplaced if u.reason == Reason.FITS_NO_NODE.value),
        "held_back": sum(1 for u in unplaced if u.reason == Reason.HELD_BACK.value),
    }
    answer = Allocation(tuple(placements), tuple(unplaced), method=rule, status=Status.FEASIBLE, stats=stats)
    answer = answer.replace(objective=float(evaluate(problem, answer).total), wall_time=time.perf_counter() - start)
    log.debug("%s/%s: placed %d of %d jobs in %.3fs", rule, order, placed_jobs, len(problem.jobs), answer.wall_time)
    return answer
