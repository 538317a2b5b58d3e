"""An answer: where every replica runs, why each left-out job is out, and how it was found."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from optalloc.core import _check
from optalloc.core.errors import InvalidAllocation, ProblemError

if TYPE_CHECKING:
    from optalloc.core.problem import Problem
    from optalloc.core.summary import Summary
    from optalloc.core.verify import Violation


class Status(StrEnum):
    """What the engine knows about its answer.

    ``optimal``: proven optimal. ``feasible``: a valid allocation, not proven optimal (every heuristic).
    ``infeasible``: no valid allocation exists (e.g. a non-preemptible running job no longer fits).
    ``unknown``: the engine stopped without an answer (time limit); the allocation is empty or a fallback.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    UNKNOWN = "unknown"

    @property
    def has_solution(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


class Reason(StrEnum):
    """Why a job is left out."""

    FITS_NO_NODE = "fits no node"  # no node of the cluster could host it even when empty
    INSUFFICIENT_CAPACITY = "insufficient capacity"  # it would fit an empty node, but none has room now
    NOT_SELECTED = "not selected"  # an optimiser preferred other jobs (e.g. lower priority or value)
    TIME_LIMIT = "time limit"  # the engine stopped before deciding this job
    HELD_BACK = "held back"  # it fits now, but the forecast demand would use its capacity better (admission)


@dataclass(frozen=True, slots=True)
class Placement:
    """Replica ``replica`` of ``job`` runs on ``node``, on GPU indices ``gpus``.

    ``gpu_milli`` is the milli-GPU taken on each of those GPUs: 1000 for whole GPUs, the share for a
    sharing replica (one GPU index), 0 with ``gpus=()`` for a CPU-only replica.
    """

    job: str
    replica: int
    node: str
    gpus: tuple[int, ...] = ()
    gpu_milli: int = 0

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "job", _check.name("job", self.job))
        _set(self, "node", _check.name("node", self.node))
        _set(self, "replica", _check.integer("replica", self.replica))
        try:
            gpus = tuple(self.gpus)
        except TypeError:
            raise ProblemError("gpus", self.gpus, "is not a list of GPU indices") from None
        _set(self, "gpus", tuple(_check.integer(f"gpus[{i}]", g) for i, g in enumerate(gpus)))
        _set(self, "gpu_milli", _check.integer("gpu_milli", self.gpu_milli))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the field values, restored without checks (a slotted dataclass pickles through
        ``dataclasses``' Python-level state functions otherwise: 2.4 us an entry against 1 us)."""
        return (placement_of, (self.job, self.replica, self.node, self.gpus, self.gpu_milli))

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "replica": self.replica,
            "node": self.node,
            "gpus": list(self.gpus),
            "gpu_milli": self.gpu_milli,
        }


@dataclass(frozen=True, slots=True)
class Unplaced:
    """``job`` is left out for ``reason`` (a :class:`Reason` value); ``detail`` says more when known."""

    job: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "job", _check.name("job", self.job))
        if not isinstance(self.reason, str) or not self.reason:
            raise ProblemError("reason", self.reason, "is not a reason")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the field values, restored without checks (see :meth:`Placement.__reduce__`)."""
        return (unplaced_of, (self.job, self.reason, self.detail))

    def to_dict(self) -> dict[str, Any]:
        out = {"job": self.job, "reason": str(self.reason)}
        if self.detail:
            out["detail"] = self.detail
        return out


def _slot_setter(cls: type, name: str) -> Callable[[object, Any], None]:
    """The setter of slot ``name`` of ``cls`` (the frozen class's own ``__setattr__`` refuses)."""
    setter: Callable[[object, Any], None] = getattr(cls, name).__set__
    return setter


# Setting the slots one by one is all that building an entry costs (0.27 us against 0.44 us through a dict).
_new = object.__new__
_placement_job, _placement_replica, _placement_node, _placement_gpus, _placement_milli = (
    _slot_setter(Placement, name) for name in ("job", "replica", "node", "gpus", "gpu_milli")
)
_unplaced_job, _unplaced_reason, _unplaced_detail = (
    _slot_setter(Unplaced, name) for name in ("job", "reason", "detail")
)


def placement_of(job: str, replica: int, node: str, gpus: tuple[int, ...], gpu_milli: int) -> Placement:
    """A :class:`Placement` of values the engine made itself (names of the problem, Python ints).

    The same object ``Placement(job, replica, node, gpus, gpu_milli)`` builds, without re-validating
    each field: that validation is for values from outside, and costs more than a whole placement
    decision when the heuristics place tens of thousands of replicas. Tests check both agree.
    """
    placement = _new(Placement)
    _placement_job(placement, job)
    _placement_replica(placement, replica)
    _placement_node(placement, node)
    _placement_gpus(placement, gpus)
    _placement_milli(placement, gpu_milli)
    return placement


def unplaced_of(job: str, reason: str, detail: str = "") -> Unplaced:
    """An :class:`Unplaced` of values the engine made itself, without re-validating them (see :func:`placement_of`)."""
    out = _new(Unplaced)
    _unplaced_job(out, job)
    _unplaced_reason(out, reason)
    _unplaced_detail(out, detail)
    return out


@dataclass(frozen=True)
class Changes:
    """What it takes to go from one allocation to another, per job name.

    ``finished``: jobs placed before that are no longer jobs of the problem (they ended between two
    scheduling cycles); they are not ``stops``, and a change set with only these is empty (``bool`` is
    false: nothing to carry out)."""

    starts: tuple[str, ...]  # placed now, not before
    stops: tuple[str, ...]  # placed before, not now (and still a job of the problem)
    migrations: tuple[str, ...]  # placed in both, on different nodes or GPUs
    moved_replicas: int  # replicas that changed node
    finished: tuple[str, ...] = ()  # placed before, no longer a job of the problem

    def __bool__(self) -> bool:
        return bool(self.starts or self.stops or self.migrations)


@dataclass(frozen=True)
class Allocation:
    """Placements per replica, the jobs left out with reasons, and how the answer was found.

    ``objective`` is the value of the problem's objective (see ``optalloc.core.objective``),
    ``bound`` a proven upper bound on it when the engine has one; ``gap`` follows from both.
    """

    placements: tuple[Placement, ...] = ()
    unplaced: tuple[Unplaced, ...] = ()
    method: str = ""
    status: Status = Status.UNKNOWN
    objective: float | None = None
    bound: float | None = None
    wall_time: float = 0.0
    stats: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by field values (the read-only ``stats`` view itself does not pickle): answers come back
        from worker processes and Ray tasks."""
        state = dict(self.__dict__)
        state["stats"] = dict(state["stats"])
        return (_restore_allocation, (state,))

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "placements", tuple(self.placements))
        _set(self, "unplaced", tuple(self.unplaced))
        for i, p in enumerate(self.placements):
            if not isinstance(p, Placement):
                raise ProblemError(f"placements[{i}]", p, "is not a Placement")
        for i, u in enumerate(self.unplaced):
            if not isinstance(u, Unplaced):
                raise ProblemError(f"unplaced[{i}]", u, "is not an Unplaced")
        try:
            _set(self, "status", Status(self.status))
        except ValueError:
            raise ProblemError("status", self.status, f"is not one of {', '.join(Status)}") from None
        _set(self, "stats", MappingProxyType(dict(self.stats)))

    # Views ----------------------------------------------------------------------------------
    @property
    def gap(self) -> float | None:
        """Relative gap ``(bound - objective) / bound``; 0 when both are 0; None when unknown."""
        if self.objective is None or self.bound is None:
            return None
        if self.bound == 0:
            return 0.0 if self.objective == 0 else None
        return max(0.0, (self.bound - self.objective) / abs(self.bound))

    def by_job(self) -> dict[str, list[Placement]]:
        out: dict[str, list[Placement]] = defaultdict(list)
        for p in self.placements:
            out[p.job].append(p)
        return dict(out)

    @cached_property
    def placed_jobs(self) -> frozenset[str]:
        """Names of the jobs with at least one placement (computed once: the allocation is frozen)."""
        return frozenset(p.job for p in self.placements)

    @cached_property
    def unplaced_jobs(self) -> frozenset[str]:
        return frozenset(u.job for u in self.unplaced)

    def replace(self, **changes: Any) -> Allocation:
        """A copy with ``changes``. Placements and unplaced entries given anew are checked; kept ones are
        not checked again (they were when this allocation was built: 150,000 of them take 5 ms)."""
        if "placements" in changes or "unplaced" in changes:
            return replace(self, **changes)
        out = replace(self, placements=(), unplaced=(), **changes)
        object.__setattr__(out, "placements", self.placements)
        object.__setattr__(out, "unplaced", self.unplaced)
        return out

    # Comparisons ----------------------------------------------------------------------------
    def diff(self, before: Allocation, problem: Problem | None = None) -> Changes:
        """Changes from ``before`` to this allocation: starts, stops and migrations.

        A replica counts as moved when its node or its GPU indices change (either means a restart).
        With ``problem`` (the one this allocation answers), jobs of ``before`` that are no longer jobs
        of the problem are reported as ``finished``, not as ``stops``: pass the last cycle's answer as
        ``before`` after jobs ended.
        """
        if not isinstance(before, Allocation):
            raise ProblemError("before", before, "is not an Allocation")
        now, then = self.by_job(), before.by_job()
        starts = tuple(j for j in now if j not in then)
        jobs = problem.job_index if problem is not None else None
        finished = tuple(j for j in then if j not in now and jobs is not None and j not in jobs)
        stops = tuple(j for j in then if j not in now and (jobs is None or j in jobs))
        migrations, moved = [], 0
        for job in now.keys() & then.keys():
            a = Counter((p.node, tuple(sorted(p.gpus))) for p in now[job])
            b = Counter((p.node, tuple(sorted(p.gpus))) for p in then[job])
            if a != b:
                migrations.append(job)
                moved += sum((b - a).values())
        return Changes(starts, stops, tuple(sorted(migrations)), moved, finished)

    # Status as data, exceptions on request -------------------------------------------------
    def raise_for_status(self) -> Allocation:
        """Return self when a solution is present; raise :class:`InvalidAllocation` otherwise."""
        if not self.status.has_solution:
            raise InvalidAllocation(f"{self.method or 'engine'} returned status {self.status.value}")
        return self

    def violations(self, problem: Problem) -> list[Violation]:
        from optalloc.core.verify import verify

        return verify(problem, self)

    def summary(self, problem: Problem) -> Summary:
        from optalloc.core.summary import summarize

        return summarize(problem, self)

    def to_dict(self) -> dict[str, Any]:
        """The placements and the unplaced jobs (the summary needs the problem: see ``summary``)."""
        return {
            "placements": [p.to_dict() for p in self.placements],
            "unplaced": [u.to_dict() for u in self.unplaced],
        }


def _restore_allocation(state: dict[str, Any]) -> Allocation:
    """Rebuild a pickled allocation without validating it again (it was valid when pickled)."""
    out = object.__new__(Allocation)
    state["stats"] = MappingProxyType(state["stats"])
    out.__dict__.update(state)
    return out
