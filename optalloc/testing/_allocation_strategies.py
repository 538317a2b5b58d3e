"""Strategies for allocations of a problem, valid or breaking one rule (public through ``optalloc.testing.strategies``)."""

from __future__ import annotations

from collections.abc import Collection

import hypothesis.strategies as st
from hypothesis import reject
from hypothesis.errors import InvalidArgument

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
from optalloc.testing._breakers import _BREAKERS, BrokenAllocation, _pinned
from optalloc.testing._ledger import Ledger, least
from optalloc.testing._problem_strategies import _place, _sometimes


# Allocations -----------------------------------------------------------------------------------
def allocations(
    problem: Problem, *, valid: bool = True, kinds: Collection[Kind | str] | None = None
) -> st.SearchStrategy[Allocation] | st.SearchStrategy[BrokenAllocation]:
    """Allocations of ``problem``, built here by a random greedy (never by optalloc's engines).

    ``valid=True``: an :class:`Allocation` that ``verify`` accepts — non-preemptible running jobs
    stay where they run, other jobs are placed (any replica count their gang allows) at drawn
    places where they fit, or listed as unplaced with a reason. ``problem.current`` must be valid.

    ``valid=False``: a :class:`BrokenAllocation` — a valid allocation changed to break exactly one
    rule, whose ``kind`` is the only :class:`~optalloc.core.Kind` ``verify`` reports.
    ``kinds`` limits the rules broken; a problem that offers none of them is rejected (some kinds
    need a suitable problem: ``gang`` a placed job of ``min_replicas >= 2``, ``not preemptible`` a
    pinned running job, ...). Every problem offers ``unknown job``.
    """
    if not isinstance(problem, Problem):
        raise InvalidArgument(f"problem={problem!r} must be a Problem")
    if not isinstance(valid, bool):
        raise InvalidArgument(f"valid={valid!r} must be True or False")
    if kinds is not None and valid:
        raise InvalidArgument("kinds= only applies to valid=False")
    chosen: tuple[Kind, ...] = tuple(Kind)
    if kinds is not None:
        if isinstance(kinds, str) or not isinstance(kinds, Collection):
            raise InvalidArgument(f"kinds={kinds!r} must be a collection of optalloc.core.Kind")
        try:
            wanted = {Kind(k) for k in kinds}
        except ValueError as err:
            raise InvalidArgument(f"kinds: {err}; valid: {', '.join(k.value for k in Kind)}") from None
        missing = wanted - set(_BREAKERS)
        if missing:
            raise InvalidArgument(f"kinds: no way to break {', '.join(sorted(missing))}")
        chosen = tuple(k for k in Kind if k in wanted)
        if not chosen:
            raise InvalidArgument("kinds must name at least one Kind")
    if valid:
        return _valid_allocations(problem)
    return _broken_allocations(problem, chosen)


@st.composite
def _valid_allocations(draw: st.DrawFn, problem: Problem) -> Allocation:
    return _valid(draw, problem)


def _valid(draw: st.DrawFn, problem: Problem) -> Allocation:
    ledger = Ledger(problem)
    placements: list[Placement] = []
    done: set[str] = set()
    current = problem.current.by_job() if problem.current is not None else {}
    pinned = _pinned(problem)
    jobs_by = {j.name: j for j in problem.jobs}
    # Pinned jobs first (they stay whatever else happens), then the other running jobs.
    for name, places in sorted(current.items(), key=lambda item: item[0] not in pinned):
        if name not in jobs_by:
            continue
        # Pinned jobs stay; other running jobs stay too when drawn so and still valid there.
        if name in pinned or (draw(st.booleans()) and _still_fits(ledger, jobs_by[name], places)):
            for p in places:
                ledger.take_placement(p)
            placements.extend(places)
            done.add(name)
    unplaced: list[Unplaced] = []
    rest = [j for j in range(len(problem.jobs)) if problem.jobs[j].name not in done]
    for j in draw(st.permutations(rest)):
        job = problem.jobs[j]
        tried = not _sometimes(draw, 4)  # shrinks towards trying every job
        where = _place(draw, ledger, job, draw(st.integers(least(job), job.replicas))) if tried else None
        if where is None:
            reason = (
                Reason.FITS_NO_NODE
                if not problem.hostable(j)
                else (Reason.INSUFFICIENT_CAPACITY if tried else Reason.NOT_SELECTED)
            )
            unplaced.append(Unplaced(job.name, reason))
            continue
        for r, (node, gpus) in enumerate(where):
            placements.append(Placement(job.name, r, problem.nodes[node].name, gpus, job.per_gpu_milli))
    return Allocation(tuple(placements), tuple(unplaced), method="strategies.allocations", status=Status.FEASIBLE)


def _still_fits(ledger: Ledger, job: Job, places: list[Placement]) -> bool:
    """Whether ``places`` (a running job's placements) are valid on top of what ``ledger`` holds."""
    if not least(job) <= len({p.replica for p in places}) == len(places) <= job.replicas:
        return False
    hosts = {p.node for p in places}
    if job.placement is PlacementRule.SPREAD and len(hosts) < len(places):
        return False
    if job.placement is PlacementRule.SINGLE_NODE and len(hosts) > 1:
        return False
    for p in places:
        if p.node not in ledger.node_at or p.replica >= job.replicas:
            return False
        node = ledger.node_at[p.node]
        spec = ledger.problem.nodes[node]
        if p.gpu_milli != job.per_gpu_milli or len(set(p.gpus)) != len(p.gpus) or len(p.gpus) != job.gpus_used:
            return False
        if any(not 0 <= g < spec.gpus for g in p.gpus) or not ledger.node_allows(job, node, (L.CPU, L.MEMORY)):
            return False
    for p in places:
        ledger.take_placement(p)
    ok = not ledger.broken()
    for p in places:
        ledger.take_placement(p, sign=-1)
    return ok


@st.composite
def _broken_allocations(draw: st.DrawFn, problem: Problem, kinds: tuple[Kind, ...]) -> BrokenAllocation:
    base = _valid(draw, problem)
    start = draw(st.integers(0, len(kinds) - 1))  # then on in a cycle while a kind does not apply
    for kind in kinds[start:] + kinds[:start]:
        broken = _BREAKERS[kind](draw, problem, base)
        if broken is not None:
            return broken
    reject()
    raise AssertionError("unreachable")  # pragma: no cover - reject() raises
