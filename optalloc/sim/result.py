"""What one simulation gives back: :class:`SimResult` (tables, timeline, counters, metrics) and the
:class:`Progress` reports of a run in progress."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from optalloc.adaptive import Plan
from optalloc.sim.config import SimConfig
from optalloc.sim.metrics import Counters, JobTable, Metrics, Timeline


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
