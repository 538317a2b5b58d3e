"""What one simulation gives back: :class:`SimResult` (tables, timeline, counters, metrics) and the
:class:`Progress` reports of a run in progress."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from optalloc.adaptive import Plan
from optalloc.sim.config import SimConfig
from optalloc.sim.metrics import Counters, JobTable, Metrics, Timeline

#: Figures of a run measured on the wall clock (what it cost, not what it decided): they differ run to run.
WALL_CLOCK = frozenset(
    {
        "solver_time",
        "solver_time_share",
        "solver_time_per_hour",
        "wall_time",
        "events_per_second",
        "solve_time",
        "controller_time",
    }
)


def _digest(values: list[Any]) -> str:
    """A fingerprint of arrays and names (shape, dtype and bytes of each; NaNs compare equal)."""
    h = hashlib.blake2b(digest_size=16)
    for value in values:
        a = np.ascontiguousarray(np.asarray(value))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@dataclass(frozen=True)
class Progress:
    """Where a run is: ``done`` jobs finished or rejected of ``total``; ``events`` handled; ``time``
    the simulated clock (s)."""

    policy: str
    done: int
    total: int
    events: int
    time: float


@dataclass(frozen=True, eq=False)
class SimResult:
    """One run: the scenario and policy names, the per-job table, the timeline, the counters, the
    metrics, and (with ``keep_plans``) the plans that changed something."""

    scenario: str
    policy: str
    description: str
    jobs: JobTable
    timeline: Timeline
    counters: Counters
    metrics: Metrics
    plans: tuple[Plan, ...] = ()
    config: SimConfig = field(default_factory=SimConfig)
    kind: str = "exact"

    def outcome(self) -> dict[str, Any]:
        """What the run decided, without what it cost: the metrics and counters less the wall-clock
        figures (:data:`WALL_CLOCK`), and digests of the per-job table and the timeline. Two runs of a
        deterministic policy give equal outcomes wherever they ran (serially, in a pool, on Ray)."""
        metrics = {k: v for k, v in self.metrics.to_dict().items() if k not in WALL_CLOCK}
        counters = {k: v for k, v in self.counters.to_dict().items() if k not in WALL_CLOCK}
        jobs = [self.jobs.names, *(getattr(self.jobs, f.name) for f in fields(self.jobs) if f.name != "names")]
        timeline = [getattr(self.timeline, f.name) for f in fields(self.timeline)]
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "metrics": metrics,
            "counters": counters,
            "jobs": _digest(jobs),
            "timeline": _digest(timeline),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "description": self.description,
            "kind": self.kind,
            "metrics": self.metrics.to_dict(),
            "counters": self.counters.to_dict(),
        }


def names(results: Iterable[SimResult]) -> list[str]:
    """The policy names of ``results``, in order."""
    return [r.policy for r in results]
