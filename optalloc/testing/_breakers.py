"""How to break each rule of an allocation, starting from a valid one (``allocations(valid=False)``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import hypothesis.strategies as st

from optalloc.core import (
    Allocation,
    Job,
    Kind,
    Placement,
    PlacementRule,
    Problem,
    Reason,
    Status,
    Unplaced,
)
from optalloc.testing import _ledger as L
from optalloc.testing._ledger import Choice, Ledger, least
from optalloc.testing._problem_strategies import _rules_ok


@dataclass(frozen=True)
class BrokenAllocation:
    """An allocation that breaks exactly one rule: ``verify`` reports violations of ``kind`` only.

    ``job`` and ``node`` name what was broken when one job or node is at fault; ``detail`` says how.
    """

    allocation: Allocation
    kind: Kind
    job: str | None = None
    node: str | None = None
    detail: str = ""


def _pinned(problem: Problem) -> set[str]:
    """Running jobs that may not be moved or stopped."""
    if problem.current is None:
        return set()
    jobs_by = {j.name: j for j in problem.jobs}
    return {name for name in problem.current.placed_jobs if name in jobs_by and not jobs_by[name].preemptible}


# How to break each rule, starting from a valid allocation ---------------------------------------
_Breaker = Callable[[st.DrawFn, Problem, Allocation], "BrokenAllocation | None"]


def _alloc(placements: list[Placement], unplaced: list[Unplaced]) -> Allocation:
    return Allocation(
        tuple(placements), tuple(unplaced), method="strategies.allocations(valid=False)", status=Status.FEASIBLE
    )


def _ghost(taken: Collection[str], stem: str) -> str:
    name = stem
    while name in taken:
        name += "-x"
    return name


def _pick(draw: st.DrawFn, items: list[Any]) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


def _break_unknown_job(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    ghost = _ghost(problem.job_index, "ghost-job")
    placements, unplaced = list(base.placements), list(base.unplaced)
    placed = bool(problem.nodes) and draw(st.booleans())
    if placed:
        node = _pick(draw, list(problem.nodes)).name
        placements.append(Placement(ghost, 0, node))
        return BrokenAllocation(_alloc(placements, unplaced), Kind.UNKNOWN_JOB, ghost, node, "placed")
    unplaced.append(Unplaced(ghost, Reason.NOT_SELECTED))
    return BrokenAllocation(_alloc(placements, unplaced), Kind.UNKNOWN_JOB, ghost, None, "listed as unplaced")


def _break_unknown_node(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    pinned = _pinned(problem)
    candidates = [j for j in problem.jobs if j.name not in pinned]
    if not candidates:
        return None
    job = _pick(draw, candidates)
    ghost = _ghost(problem.node_index, "ghost-node")
    placements = [*base.placements, Placement(job.name, 0, ghost)]
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.UNKNOWN_NODE, job.name, ghost)


def _break_replica_range(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    if not base.placements:
        return None
    k = draw(st.integers(0, len(base.placements) - 1))
    p = base.placements[k]
    out_of_range = problem.jobs[problem.job_index[p.job]].replicas
    placements = list(base.placements)
    placements[k] = dataclasses.replace(p, replica=out_of_range)
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.REPLICA_RANGE, p.job, p.node)


def _break_duplicate_replica(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    by_job = base.by_job()
    pinned = _pinned(problem)
    placements = list(base.placements)
    # Renumber a replica of a job placed above its minimum: still enough distinct replicas.
    renumber = [
        name for name, ps in by_job.items() if len(ps) >= 2 and len(ps) > least(problem.jobs[problem.job_index[name]])
    ]
    # Or place a copy of a replica where one more fits (only jobs that may move).
    ledger = Ledger(problem)
    for p in placements:
        ledger.take_placement(p)
    copies: list[tuple[str, Choice]] = []
    for name, ps in by_job.items():
        if name in pinned:
            continue
        job = problem.jobs[problem.job_index[name]]
        hosts = [ledger.node_at[p.node] for p in ps]
        acc: list[Choice] = [(n, ()) for n in hosts]
        copies.extend((name, c) for c in ledger.replica_choices(job, symmetric=False) if _rules_ok(job, acc, c[0]))
    ways = (["renumber"] if renumber else []) + (["copy"] if copies else [])
    if not ways:
        return None
    if draw(st.sampled_from(ways)) == "renumber":
        name = _pick(draw, renumber)
        first, second = (placements.index(p) for p in by_job[name][:2])
        placements[second] = dataclasses.replace(placements[second], replica=placements[first].replica)
        node = placements[second].node
    else:
        name, (n, gpus) = _pick(draw, copies)
        original = by_job[name][0]
        node = problem.nodes[n].name
        placements.append(Placement(name, original.replica, node, gpus, original.gpu_milli))
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.DUPLICATE_REPLICA, name, node)


def _movable_placed(problem: Problem, base: Allocation) -> list[str]:
    pinned = _pinned(problem)
    return sorted(name for name in base.placed_jobs if name not in pinned)


def _break_duplicate_unplaced(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    candidates = sorted(base.unplaced_jobs) + _movable_placed(problem, base)
    if not candidates:
        return None
    name = _pick(draw, candidates)
    placements = [p for p in base.placements if p.job != name]
    unplaced = [u for u in base.unplaced if u.job != name] + [Unplaced(name, Reason.NOT_SELECTED)] * 2
    return BrokenAllocation(_alloc(placements, unplaced), Kind.DUPLICATE_UNPLACED, name)


def _break_placed_and_unplaced(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    if not base.placements:
        return None
    name = _pick(draw, sorted(base.placed_jobs))
    unplaced = [*base.unplaced, Unplaced(name, Reason.NOT_SELECTED)]
    return BrokenAllocation(_alloc(list(base.placements), unplaced), Kind.PLACED_AND_UNPLACED, name)


def _break_missing_job(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    candidates = sorted(base.unplaced_jobs) + _movable_placed(problem, base)
    if not candidates:
        return None
    name = _pick(draw, candidates)
    placements = [p for p in base.placements if p.job != name]
    unplaced = [u for u in base.unplaced if u.job != name]
    return BrokenAllocation(_alloc(placements, unplaced), Kind.MISSING_JOB, name)


def _break_gpu_index(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    pinned = _pinned(problem)  # a pinned job rebound to other GPUs would also break "not preemptible"
    candidates = [k for k, p in enumerate(base.placements) if p.gpus and p.job not in pinned]
    if not candidates:
        return None
    k = _pick(draw, candidates)
    p = base.placements[k]
    gpus = list(p.gpus)
    gpus[draw(st.integers(0, len(gpus) - 1))] = problem.nodes[problem.node_index[p.node]].gpus
    placements = list(base.placements)
    placements[k] = dataclasses.replace(p, gpus=tuple(gpus))
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.GPU_INDEX, p.job, p.node)


def _break_gpu_shape(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    if not base.placements:
        return None
    k = draw(st.integers(0, len(base.placements) - 1))
    p = base.placements[k]
    want = problem.jobs[problem.job_index[p.job]].per_gpu_milli
    wrong = {0: 1, 1000: 500, 999: 998}.get(want, want + 1)
    placements = list(base.placements)
    placements[k] = dataclasses.replace(p, gpu_milli=wrong)
    detail = f"gpu_milli {wrong} instead of {want}"
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.GPU_SHAPE, p.job, p.node, detail)


def _break_gang(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    by_job = base.by_job()
    candidates = [n for n in _movable_placed(problem, base) if least(problem.jobs[problem.job_index[n]]) >= 2]
    if not candidates:
        return None
    name = _pick(draw, candidates)
    keep = draw(st.integers(1, least(problem.jobs[problem.job_index[name]]) - 1))
    dropped = by_job[name][keep:]
    placements = [p for p in base.placements if p not in dropped]
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.GANG, name)


def _break_not_preemptible(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    candidates = sorted(_pinned(problem) & base.placed_jobs)
    if not candidates:
        return None
    name = _pick(draw, candidates)
    placements = [p for p in base.placements if p.job != name]
    unplaced = [*base.unplaced, Unplaced(name, Reason.NOT_SELECTED)]
    return BrokenAllocation(_alloc(placements, unplaced), Kind.NOT_PREEMPTIBLE, name, detail="stopped")


_RELAXED: dict[Kind, str] = {
    Kind.CPU: L.CPU,
    Kind.MEMORY: L.MEMORY,
    Kind.GPU_EXCLUSIVE: L.GPU_EXCLUSIVE,
    Kind.GPU_SHARE: L.GPU_SHARE,
    Kind.GPU_MEMORY: L.GPU_MEMORY,
    Kind.GPU_MODEL: L.GPU_MODEL,
    Kind.NODE_SELECTOR: L.NODE_SELECTOR,
    Kind.SPREAD: L.SPREAD,
    Kind.SINGLE_NODE: L.SINGLE_NODE,
}

_SEARCH_LIMIT = 400  # assignments examined per job when looking for a way to break a rule


def _relevant(rule: str, job: Job) -> bool:
    return {
        L.CPU: job.cpu > 0,
        L.MEMORY: job.memory > 0,
        L.GPU_EXCLUSIVE: job.gpus_used > 0,
        L.GPU_SHARE: job.gpu_milli > 0,
        L.GPU_MEMORY: job.gpus_used > 0 and job.gpu_memory > 0,
        L.GPU_MODEL: job.gpus_used > 0 and bool(job.gpu_models),
        L.NODE_SELECTOR: bool(job.node_selector),
        L.SPREAD: job.placement is PlacementRule.SPREAD and job.replicas > 1,
        L.SINGLE_NODE: job.placement is PlacementRule.SINGLE_NODE and job.replicas > 1,
    }[rule]


def _breaks(rule: str, ledger: Ledger, job: Job, assignment: list[Choice]) -> bool:
    """Whether placing ``assignment`` (booked in ``ledger``) breaks ``rule``."""
    hosts = [ledger.problem.nodes[n] for n, _ in assignment]
    if rule == L.GPU_MODEL:
        return any(h.gpu_model not in job.gpu_models for h in hosts)
    if rule == L.NODE_SELECTOR:
        return any(any(h.labels.get(k) != v for k, v in job.node_selector.items()) for h in hosts)
    if rule == L.SPREAD:
        return len({h.name for h in hosts}) < len(hosts)
    if rule == L.SINGLE_NODE:
        return len({h.name for h in hosts}) > 1
    return rule in ledger.broken()


def _relaxed_breaker(kind: Kind) -> _Breaker:
    rule = _RELAXED[kind]

    def breaker(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
        pinned = _pinned(problem)
        candidates = [j for j in problem.jobs if j.name not in pinned and _relevant(rule, j)]
        for job in draw(st.permutations(candidates)) if candidates else ():
            rest = [p for p in base.placements if p.job != job.name]
            ledger = Ledger(problem)
            for p in rest:
                ledger.take_placement(p)
            hits = list(islice(_breaking(ledger, job, rule), 24))
            if not hits:
                continue
            assignment = _pick(draw, hits)
            placements = rest + [
                Placement(job.name, r, problem.nodes[n].name, gpus, job.per_gpu_milli)
                for r, (n, gpus) in enumerate(assignment)
            ]
            unplaced = [u for u in base.unplaced if u.job != job.name]
            node = problem.nodes[assignment[0][0]].name
            return BrokenAllocation(_alloc(placements, unplaced), kind, job.name, node, f"{rule} relaxed")
        return None

    breaker.__name__ = f"_break_{rule.replace('-', '_')}"
    return breaker


def _breaking(ledger: Ledger, job: Job, rule: str) -> Iterator[list[Choice]]:
    for count in range(least(job), job.replicas + 1):
        tried = islice(ledger.assignments(job, count, (rule,), symmetric=False), _SEARCH_LIMIT)
        for assignment in tried:
            if _breaks(rule, ledger, job, assignment):
                yield assignment


_BREAKERS: dict[Kind, _Breaker] = {
    Kind.UNKNOWN_JOB: _break_unknown_job,
    Kind.UNKNOWN_NODE: _break_unknown_node,
    Kind.REPLICA_RANGE: _break_replica_range,
    Kind.DUPLICATE_REPLICA: _break_duplicate_replica,
    Kind.DUPLICATE_UNPLACED: _break_duplicate_unplaced,
    Kind.PLACED_AND_UNPLACED: _break_placed_and_unplaced,
    Kind.MISSING_JOB: _break_missing_job,
    Kind.GPU_INDEX: _break_gpu_index,
    Kind.GPU_SHAPE: _break_gpu_shape,
    Kind.GANG: _break_gang,
    Kind.NOT_PREEMPTIBLE: _break_not_preemptible,
    **{kind: _relaxed_breaker(kind) for kind in _RELAXED},
}
