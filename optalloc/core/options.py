"""SolveOptions: every knob of one solve() call, in one frozen, serialisable object."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from optalloc.core import _check
from optalloc.core.errors import ProblemError
from optalloc.core.limits import LIMITS


@dataclass(frozen=True)
class SolveOptions:
    """Options of one ``solve()`` call.

    ``time_limit`` seconds of wall time for the exact engines (None = no limit); ``workers`` CP-SAT
    search workers (None = the machine's cores); ``seed`` for every randomised choice;
    ``relative_gap`` stops the exact engines once ``(bound - objective) / bound`` is at most this;
    ``deterministic`` makes CP-SAT repeatable run to run (a deterministic time limit, and one worker
    unless ``workers`` says otherwise); ``order`` is the queue ordering of the heuristics; ``round``
    the scheduling round (round-robin rotates by it); ``allow_migration`` lets engines move or
    preempt running preemptible jobs at the migration cost (otherwise what runs stays where it runs);
    ``verify`` re-checks every answer (solve raises SolverError on a violation: an engine bug).
    ``fragmentation_guide`` (0 = off) steers the exact engines' search towards placements that grow the
    FGD fragmentation least (milli-GPU of value per milli-GPU of fragmentation growth, e.g. 0.05): for
    callers deciding arrivals in batches. It does not change how answers are scored; with it on, the
    bound reported is the LP relaxation's. ``warm_start``: the heuristic placement rule whose answer
    ``auto`` hints CP-SAT with (and falls back to); ``fgd-plus`` suits online batches.
    ``admission_forecast`` (0 = off: every job that fits is worth placing) is the demand still expected
    after this call, as a multiple of the free GPU capacity (e.g. 1.3 on a cluster whose queue keeps
    30% more work than it can hold): the exact engines then value the capacity an allocation leaves by
    what that demand could still place there (``optalloc.models.future``), and may hold back a job that
    fits (reason ``held back``) rather than let it strand a GPU that whole-GPU jobs would fill.
    """

    time_limit: float | None = 10.0
    workers: int | None = None
    seed: int = 0
    relative_gap: float = 0.0
    deterministic: bool = False
    order: str = "fcfs"
    round: int = 0
    allow_migration: bool = False
    verify: bool = True
    log_search: bool = False
    fragmentation_guide: float = 0.0
    warm_start: str = "best-fit"
    admission_forecast: float = 0.0

    def __post_init__(self) -> None:
        _check.real("time_limit", self.time_limit, minimum=0, optional=True)
        if self.time_limit is not None and self.time_limit <= 0:
            raise ProblemError("time_limit", self.time_limit, "is not a positive number of seconds")
        if self.workers is not None:
            _check.integer("workers", self.workers, minimum=1, maximum=LIMITS.workers)
        _check.integer("seed", self.seed, minimum=None, maximum=2**31 - 1)  # CP-SAT's seed is a 32-bit integer
        gap = _check.real("relative_gap", self.relative_gap, minimum=0)
        if gap is not None and gap >= 1:
            raise ProblemError("relative_gap", self.relative_gap, "is not below 1")
        _check.integer("round", self.round)
        _check.real("fragmentation_guide", self.fragmentation_guide, minimum=0)
        _check.real("admission_forecast", self.admission_forecast, minimum=0)
        if not isinstance(self.warm_start, str) or not self.warm_start:
            raise ProblemError("warm_start", self.warm_start, "is not a heuristic rule name")
        if not isinstance(self.order, str):
            raise ProblemError("order", self.order, "is not a queue ordering name")

    @property
    def num_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return 1 if self.deterministic else max(1, os.cpu_count() or 1)

    def replace(self, **changes: Any) -> SolveOptions:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SolveOptions:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ProblemError(f"options.{key}", data[key], f"is not an option (known: {', '.join(sorted(known))})")
        return cls(**data)
