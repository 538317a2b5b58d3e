"""The loop's computing half: the adaptive controller's state, its steps, and the views they publish.

An :class:`Engine` holds the :class:`~optalloc.adaptive.ControllerState` and runs
``optalloc.adaptive.step(state, now, observation, events)``; after a step whose allocation differs
from the published one it verifies the plan, builds the :class:`~optalloc.service.view.View` requests
will read and encodes what the store keeps. It runs in the service's worker process
(:mod:`optalloc.service.worker`, the default) or in a thread of the service (:class:`InThread`): either
way the service only hands it events and applies the :class:`StepOutcome` it answers.

:func:`restore_state` builds the controller's state from a :class:`Snapshot` (the nodes, the jobs and the
published plan): at start, from the store; after the worker died, from what the service holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from optalloc.adaptive import ControllerConfig, ControllerState, Event, Observation, Plan, step
from optalloc.core import Allocation, Job, Node, Problem, ProblemError, Status, verify
from optalloc.io import allocation_from_dict
from optalloc.service.store import StoredPlan
from optalloc.service.view import View, build_view, nodes_digest, plan_info

log = logging.getLogger(__name__)

__all__ = ["Engine", "InThread", "Snapshot", "StepFigures", "StepOutcome", "restore_state"]


@dataclass(frozen=True)
class Snapshot:
    """What an engine starts from: the active (not drained) nodes, every job, the published plan (None:
    none yet) and the time."""

    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]
    plan: StoredPlan | None
    now: float


@dataclass(frozen=True)
class StepFigures:
    """What the metrics and the view need of the state after a step."""

    queue: tuple[str, ...]
    running: int
    drift: float
    stale: bool
    error: str
    steps: int
    gpu_ratio: float
    cpu_ratio: float
    memory_ratio: float


@dataclass(frozen=True)
class StepOutcome:
    """The answer to one step.

    ``plan``: the step's plan without its allocation and horizon (those travel in ``view``);
    ``view``: the new published view when the allocation changed and verified (None: keep the current
    one); ``stored``: the view's info and allocation as the store's JSON text; ``took``: seconds of the
    step; ``invalid``: violations of a plan that was not published; ``error``: the step failed (the state
    is as before it); ``lost``: no answer at all (the worker died or hung, or the loop is stopping).
    """

    plan: Plan | None = None
    figures: StepFigures | None = None
    view: View | None = None
    stored: tuple[str, str] | None = None
    took: float = 0.0
    invalid: tuple[str, ...] = ()
    error: str = ""
    lost: str = ""


class Engine:
    """The controller of one service: :meth:`reset` from a snapshot, then :meth:`step`."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.state: ControllerState | None = None
        self.version = 0
        self.published: Allocation = Allocation(status=Status.FEASIBLE)

    def reset(self, snapshot: Snapshot) -> View:
        """Start again from ``snapshot``; the view of its plan."""
        state, view = restore_state(snapshot, self.config)
        self.state, self.version, self.published = state, view.version, view.allocation
        return view

    def step(self, now: float, observation: Observation | None, events: list[Event]) -> StepOutcome:
        """One step at ``now``. A failure is logged with its traceback and answered as ``error``."""
        if self.state is None:
            raise RuntimeError("reset() the engine before stepping it")
        started = time.perf_counter()
        before = self.state
        try:
            state, plan = step(before, now, observation, events)
        except Exception as err:  # the loop outlives any one step: logged here, counted by the service
            log.exception("the loop's step failed")
            return StepOutcome(error=f"{type(err).__name__}: {err}", took=time.perf_counter() - started)
        self.state = state
        took = time.perf_counter() - started
        allocation = plan.allocation
        changed = allocation is not before.allocation and (
            set(allocation.placements) != set(self.published.placements)
            or set(allocation.unplaced) != set(self.published.unplaced)
        )
        view: View | None = None
        stored: tuple[str, str] | None = None
        invalid: tuple[str, ...] = ()
        if changed:
            # The controller verifies what it adopts; this is the service's own check before publishing.
            bad = _check(state, allocation)
            if bad:
                invalid = tuple(bad[:3])
            else:
                info = plan_info(plan, self.config.budget)
                info["nodes_digest"] = nodes_digest(state.nodes)
                view = build_view(self.version + 1, now, info, allocation, state)
                stored = (_dumps(info), _dumps(dict(view.allocation_dict)))
                self.version, self.published = view.version, allocation
        head = replace(plan, allocation=Allocation(method=allocation.method, status=allocation.status), horizon=None)
        return StepOutcome(head, figures(state), view, stored, took, invalid)


class InThread:
    """An :class:`Engine` called directly by the loop's thread (``--loop-in thread``)."""

    pid: int | None = None
    restarts = 0

    def __init__(self, config: ControllerConfig, snapshot: Callable[[], Snapshot]) -> None:
        self.engine = Engine(config)
        self.snapshot = snapshot

    def start(self) -> bool:
        """Reset the engine from the service's snapshot (True: ready to step)."""
        self.engine.reset(self.snapshot())
        return True

    def step(self, now: float, observation: Observation | None, events: list[Event]) -> StepOutcome:
        return self.engine.step(now, observation, events)

    def close(self) -> None:
        self.engine.state = None


def figures(state: ControllerState) -> StepFigures:
    ratios = {"gpu": 0.0, "cpu": 0.0, "memory": 0.0}
    if len(state.capacity) and len(state.planned):
        cap = state.capacity.sum(axis=0)
        used = state.planned.sum(axis=0)
        for key, col in (("gpu", 0), ("cpu", 2), ("memory", 3)):
            ratios[key] = float(used[col] / cap[col]) if cap[col] > 0 else 0.0
    return StepFigures(
        queue=state.queue,
        running=len(state.running),
        drift=float(state.drift.cluster),
        stale=state.stale,
        error=state.error,
        steps=state.steps,
        gpu_ratio=ratios["gpu"],
        cpu_ratio=ratios["cpu"],
        memory_ratio=ratios["memory"],
    )


def restore_state(snapshot: Snapshot, config: ControllerConfig) -> tuple[ControllerState, View]:
    """The controller's state and the published view from ``snapshot``: its plan's placements of jobs and
    nodes that still exist run (any that breaks a rule waits again), every other job waits.

    With a plan, the controller does not re-solve at once (events and drift decide as before) and admits
    at once only if something changed after that plan was made (jobs or nodes it never saw)."""
    now = snapshot.now
    stored = snapshot.plan
    nodes, jobs = snapshot.nodes, snapshot.jobs
    current = _running(stored, nodes, jobs, config) if stored is not None else None
    problem = Problem(nodes, jobs, current=current, weights=config.weights)
    started = {name: stored.time for name in (current.placed_jobs if current else ())} if stored else None
    state = ControllerState.initial(problem, config, now=now, started=started)
    if stored is None:
        return state, build_view(0, None, plan_info(None, config.budget), state.allocation, state)
    seen = {p["job"] for p in stored.allocation.get("placements", ())}
    seen |= {u["job"] for u in stored.allocation.get("unplaced", ())}
    names = {j.name for j in jobs}
    dirty = seen != names or stored.info.get("nodes_digest") != nodes_digest(nodes)
    state = replace(state, drift=state.drift.replace(last_resolve=now), dirty=dirty)
    kept = current.placed_jobs if current is not None else frozenset()
    try:
        allocation = allocation_from_dict(stored.allocation)
    except ProblemError:
        allocation = Allocation(status=Status.FEASIBLE)
    allocation = allocation.replace(
        placements=tuple(p for p in allocation.placements if p.job in kept),
        unplaced=tuple(u for u in allocation.unplaced if u.job in names and u.job not in kept),
    )
    return state, build_view(stored.version, stored.time, dict(stored.info), allocation, state)


def _running(
    stored: StoredPlan, nodes: tuple[Node, ...], jobs: tuple[Job, ...], config: ControllerConfig
) -> Allocation:
    """The stored plan's placements of jobs and nodes that still exist, without any that breaks a rule
    (a node changed after the plan was written: its jobs wait again)."""
    try:
        allocation = allocation_from_dict(stored.allocation)
    except ProblemError as err:
        log.error("the stored plan %d cannot be read (%s); starting from an empty allocation", stored.version, err)
        return Allocation(status=Status.FEASIBLE)
    names = {j.name for j in jobs}
    node_names = {n.name for n in nodes}
    by_job = allocation.by_job()
    ok = {j for j, ps in by_job.items() if j in names and all(p.node in node_names for p in ps)}
    running = Allocation(
        tuple(p for p in allocation.placements if p.job in ok), method="running", status=Status.FEASIBLE
    )

    def broken() -> list[Any]:
        problem = Problem(nodes, tuple(j for j in jobs if j.name in running.placed_jobs), weights=config.weights)
        return verify(problem, running)

    for _ in range(3):
        bad = {v.job for v in broken() if v.job is not None}
        if not bad:
            break
        log.warning("restored plan: %s no longer fit; they wait again", ", ".join(sorted(bad)))
        running = running.replace(placements=tuple(p for p in running.placements if p.job not in bad))
    if broken():
        log.error("the stored plan breaks the cluster's rules; starting from an empty allocation")
        return Allocation(status=Status.FEASIBLE)
    return running


def _check(state: ControllerState, allocation: Allocation) -> list[str]:
    """Violations of ``allocation`` against the cluster the state describes (its running jobs)."""
    placed = allocation.placed_jobs
    jobs = tuple(state.jobs[n] for n in state.jobs if n in placed)
    problem = Problem(state.nodes, jobs, weights=state.config.weights)
    running = Allocation(allocation.placements, method=allocation.method, status=Status.FEASIBLE)
    return [str(v) for v in verify(problem, running)]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
