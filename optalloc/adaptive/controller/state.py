"""What the controller knows between two steps: :class:`ControllerState`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from optalloc.adaptive import drift as drift_mod
from optalloc.adaptive import tiers as tiers_mod
from optalloc.adaptive.controller.config import ControllerConfig
from optalloc.adaptive.drift import DriftState
from optalloc.adaptive.plan import Plan
from optalloc.adaptive.rightsize import JobTrack
from optalloc.core import Allocation, Job, Node, Problem, Status


@dataclass(frozen=True, eq=False)
class ControllerState:
    """Everything the controller knows between steps. Build the first one with :meth:`initial`.

    ``nodes``; ``jobs``: the spec of every job running or waiting (right-sized specs replace the asked
    ones, which ``requested`` keeps); ``allocation``: what runs now; ``queue``: waiting jobs in arrival
    order; ``started``: when each running job started (seconds, the steps' clock); ``waiting_since``:
    when each waiting job joined the queue (its arrival event, the initial state, or its preemption);
    ``drift``: the drift state; ``plan``:
    the last plan that changed something; ``time``: the last step's ``now``; ``stale``/``error``: the
    monitoring data is stale, and why; ``dirty``: the queue or the free capacity changed since the last
    admission; ``usage``: smoothed job usage (right-sizing only); ``steps``/``resolves``/``fallbacks``:
    counters (``fallbacks``: solves where the fallback heuristic stood in for the method);
    ``after_solve``: the seconds the last re-solve spent after its solver returned (capping disruptions,
    committing the answer), which the next one keeps back from its solver's time.
    """

    config: ControllerConfig
    nodes: tuple[Node, ...]
    jobs: Mapping[str, Job]
    allocation: Allocation
    queue: tuple[str, ...]
    started: Mapping[str, float]
    drift: DriftState
    waiting_since: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    plan: Plan | None = None
    time: float | None = None
    stale: bool = False
    error: str = ""
    dirty: bool = True
    usage: Mapping[str, JobTrack] = field(default_factory=lambda: MappingProxyType({}))
    requested: Mapping[str, Job] = field(default_factory=lambda: MappingProxyType({}))
    steps: int = 0
    resolves: int = 0
    fallbacks: int = 0
    after_solve: float = 0.0
    # Caches rebuilt when nodes or the allocation change (not part of the model of the world).
    node_index: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    capacity: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    planned: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @classmethod
    def initial(
        cls,
        problem: Problem,
        config: ControllerConfig | None = None,
        *,
        now: float = 0.0,
        started: Mapping[str, float] | None = None,
    ) -> ControllerState:
        """The state before the first step: ``problem.current`` runs, every other job waits.

        ``config``: default :class:`~optalloc.adaptive.controller.config.ControllerConfig` with the
        problem's objective weights.
        ``started``: when the running jobs started (default ``now``: their whole estimated duration is
        assumed to remain).
        """
        cfg = config if config is not None else ControllerConfig(weights=problem.weights)
        running = problem.current if problem.current is not None else Allocation(status=Status.FEASIBLE)
        running = Allocation(running.placements, method="running", status=Status.FEASIBLE)
        placed = running.placed_jobs
        jobs = {j.name: j for j in problem.jobs}
        queue = tuple(j.name for j in sorted(problem.jobs, key=lambda j: j.arrival) if j.name not in placed)
        starts = {name: float((started or {}).get(name, now)) for name in placed}
        state = cls(
            config=cfg,
            nodes=problem.nodes,
            jobs=MappingProxyType(jobs),
            allocation=running,
            queue=queue,
            started=MappingProxyType(starts),
            drift=DriftState.initial([n.name for n in problem.nodes]),
            waiting_since=MappingProxyType(dict.fromkeys(queue, float(now))),
            time=None,
        )
        return state._with_nodes(problem.nodes)

    # Derived views --------------------------------------------------------------------------
    @property
    def running(self) -> frozenset[str]:
        return self.allocation.placed_jobs

    def problem(self, queued: Sequence[str] | None = None) -> Problem:
        """The window as a :class:`Problem`: running jobs, then ``queued`` (default: the whole queue),
        with the running allocation as ``current``."""
        running = self.running
        names = [n for n in self.jobs if n in running]
        names += list(self.queue if queued is None else queued)
        jobs = tuple(self.jobs[n] for n in names)
        catalogue = frozenset().union(*(j.gpu_models for j in jobs)) if jobs else frozenset()
        return Problem(
            self.nodes,
            jobs,
            current=Allocation(self.allocation.placements, method="running", status=Status.FEASIBLE),
            weights=self.config.weights,
            gpu_models=catalogue,
        )

    def solve_view(self, queued: Sequence[str], now: float) -> Problem:
        """:meth:`problem` as the solves see it: with ``duration_tiers``, priorities tiered by the
        estimated remaining time at ``now`` (:mod:`optalloc.adaptive.tiers`)."""
        problem = self.problem(queued)
        thresholds = self.config.duration_tiers
        if not thresholds:
            return problem
        return problem.replace(jobs=tiers_mod.tiered(problem.jobs, self.remaining(now), thresholds))

    def remaining(self, now: float) -> dict[str, float | None]:
        """Estimated seconds left per running job (None: no duration estimate)."""
        out: dict[str, float | None] = {}
        for name in self.running:
            duration = self.jobs[name].duration
            out[name] = None if duration is None else max(0.0, duration - (now - self.started.get(name, now)))
        return out

    def _with_nodes(self, nodes: tuple[Node, ...]) -> ControllerState:
        index = {n.name: i for i, n in enumerate(nodes)}
        return replace(
            self,
            nodes=nodes,
            node_index=MappingProxyType(index),
            capacity=drift_mod.capacity(nodes),
            drift=self.drift.reindex([n.name for n in nodes]),
        )._with_allocation(self.allocation)

    def _with_allocation(self, allocation: Allocation) -> ControllerState:
        plan = drift_mod.planned(self.node_index, self.jobs, allocation.placements, len(self.nodes))
        return replace(self, allocation=allocation, planned=plan)
