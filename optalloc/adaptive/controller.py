"""The controller: one pure step of the adaptive loop.

``step(state, now, observations, events) -> (state, plan)``. The caller owns the clock (``now``, seconds)
and the world: it passes what it observed (an :class:`~optalloc.adaptive.monitor.Observation`, or None)
and what happened (:class:`Event`: arrivals, completions, nodes lost or added), and gets back the next
state and a :class:`Plan` of changes (starts, preemptions, migrations, resizes, each with its reason)
plus the allocation that should run. The CLI (``optalloc watch``), the simulator and a future service
all drive this same step.

What a step does, cheapest first:

1. apply the events (a completion frees its resources, a lost node's jobs go back to the queue);
2. fold a fresh observation into the smoothed drift (stale data is recorded as stale and not acted on);
3. ask :func:`optalloc.adaptive.drift.decide` whether to re-solve: drift above its threshold, enough
   arrivals, enough freed capacity, a node event, or the very first step with jobs waiting;
4. **re-solve** (when triggered): optionally right-size requests from observed usage, then solve the
   window (running + queued jobs) with ``config.method`` under ``config.budget`` seconds, migrations
   allowed at the migration weight, falling back to the ``config.fallback`` heuristic when the exact
   method has no answer in time; with ``config.horizon`` set, the horizon model picks which queued jobs
   start now and only those are placed. The number of jobs moved or preempted is capped at
   ``config.max_migrations``; the rest keep running where they run;
5. otherwise **admit** (when jobs wait and something changed): the fallback heuristic places what fits
   around the running jobs, without moving any (the horizon model decides instead when it is on, and
   ``config.method`` solves the admission with ``config.admit_exact``);
6. otherwise nothing: the plan is empty and the allocation is the last one (no solve, no rebuild).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.adaptive import drift as drift_mod
from optalloc.adaptive import rightsize
from optalloc.adaptive import tiers as tiers_mod
from optalloc.adaptive.drift import DriftConfig, DriftState, Trigger
from optalloc.adaptive.monitor import Observation
from optalloc.adaptive.plan import Action, ActionKind, Event, EventKind, Plan
from optalloc.adaptive.rightsize import JobTrack, RightSizing
from optalloc.core import (
    Allocation,
    ClusterState,
    Job,
    Node,
    ObjectiveWeights,
    Placement,
    Problem,
    ProblemError,
    Status,
    Unplaced,
    _check,
    verify,
)
from optalloc.models.horizon import HorizonConfig, HorizonPlan, plan_horizon

log = logging.getLogger(__name__)


# Configuration and state ----------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerConfig:
    """Knobs of the controller.

    ``method``: the engine of a re-solve (any name of ``optalloc.solve.methods()``; ``auto`` runs the
    best heuristic and CP-SAT). ``fallback``: the heuristic used when the method has no answer in time,
    and for admission between re-solves (unless ``admit_exact``). ``budget``: seconds one re-solve may
    take (the exact engines' time limit). ``allow_migration``: a re-solve may move or preempt running preemptible jobs (each moved
    replica costs ``weights.migration`` in the objective); ``max_migrations``: at most this many jobs
    moved or preempted per step (the plan is trimmed to it: the others keep running where they run).
    ``weights``: the objective weights of every solve. ``drift``: drift detection and event triggers.
    ``horizon``: the time-indexed horizon model (None: plain packing re-solves); ``horizon_share``: part
    of the budget it may use (at most its own ``time_limit``). ``right_size``: opt-in right-sizing
    (None: off). ``admit``: between re-solves, place waiting jobs that fit without moving anyone.
    ``order``: the queue ordering given to the heuristics. ``max_window``: queued jobs considered by one
    solve at most (by priority, then arrival). ``seed``/``workers``: for the engines.
    ``duration_tiers``: thresholds (seconds of estimated remaining time, increasing) of Tiresias-style
    tiers (:mod:`optalloc.adaptive.tiers`): every solve prefers shorter tiers within a priority, and the
    heuristics order the queue by tier, then arrival (the ``priority`` order). () = off.
    ``warm_start`` and ``fragmentation_guide``: passed to the method's solves (``SolveOptions``): the
    heuristic ``auto`` starts CP-SAT from, and the FGD guide that steers the program towards placements
    later arrivals fit (``fgd-plus`` and 0.05 suit a loop of arrivals; the defaults are ``auto``'s).
    ``admit_exact``: admissions between re-solves also use ``method`` (around the running jobs, nothing
    moves) instead of the fallback heuristic: a packing solve at every event, as ``cpsat-packing`` does.
    """

    method: str = "auto"
    fallback: str = "best-fit"
    budget: float = 1.0
    allow_migration: bool = True
    max_migrations: int = 2
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    drift: DriftConfig = field(default_factory=DriftConfig)
    horizon: HorizonConfig | None = None
    horizon_share: float = 0.5
    right_size: RightSizing | None = None
    admit: bool = True
    order: str = "fcfs"
    max_window: int = 2000
    seed: int = 0
    workers: int | None = None
    duration_tiers: tuple[float, ...] = ()
    warm_start: str = "best-fit"
    fragmentation_guide: float = 0.0
    admit_exact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration_tiers", tiers_mod.check_thresholds(self.duration_tiers))
        _check.real("fragmentation_guide", self.fragmentation_guide, minimum=0)
        if not isinstance(self.admit_exact, bool):
            raise ProblemError("admit_exact", self.admit_exact, "is not true or false")
        if isinstance(self.warm_start, str) and self.warm_start:
            from optalloc.solve import methods

            rules = [m.name for m in methods("heuristic")]
            if self.warm_start not in rules:
                raise ProblemError(
                    "warm_start", self.warm_start, f"is not a heuristic rule (known: {', '.join(rules)})"
                )
        if not (isinstance(self.budget, int | float) and self.budget > 0):
            raise ProblemError("budget", self.budget, "is not a positive number of seconds")
        if not (isinstance(self.max_migrations, int) and self.max_migrations >= 0):
            raise ProblemError("max_migrations", self.max_migrations, "is not a non-negative integer")
        if not (isinstance(self.max_window, int) and self.max_window >= 1):
            raise ProblemError("max_window", self.max_window, "is not a positive integer")
        if not 0 < self.horizon_share < 1:
            raise ProblemError("horizon_share", self.horizon_share, "is not in (0, 1)")
        for name in ("method", "fallback", "order", "warm_start"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ProblemError(name, getattr(self, name), "is not a name")

    @property
    def queue_order(self) -> str:
        """The ordering the heuristics use: ``order``, except that the default ``fcfs`` becomes
        ``priority`` (tier, then arrival) when ``duration_tiers`` are set."""
        return "priority" if self.duration_tiers and self.order == "fcfs" else self.order


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
    admission; ``usage``: smoothed job usage (right-sizing only); ``steps``/``resolves``: counters.
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

        ``config``: default :class:`ControllerConfig` with the problem's objective weights.
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


# The step -------------------------------------------------------------------------------------


def step(
    state: ControllerState,
    now: float,
    observations: Observation | None = None,
    events: Iterable[Event] = (),
) -> tuple[ControllerState, Plan]:
    """One step of the loop at time ``now`` (seconds, the caller's clock).

    Every decision uses ``now``; the step reads a monotonic clock only to bound and report the time its
    solves take (``config.budget``).

    ``observations``: the latest usage (None: no monitoring at this step; a stale observation marks the
    data stale and the controller keeps its plan until fresh data arrives). ``events``: what happened
    since the last step. Returns the next state and the plan of this step (empty when nothing changed).
    """
    st = state
    if st.time is not None and now < st.time:
        log.warning("controller clock went back from %.3f to %.3f; using %.3f", st.time, now, st.time)
        now = st.time
    forced: list[Action] = []
    events = tuple(events)
    if events:
        st = _apply_events(st, now, events, forced)
    fresh = observations is not None and not observations.stale
    if observations is not None:
        st = _observe(st, observations)
    trigger = _decide(st, now, fresh)
    cfg = st.config
    if trigger is not None:
        st, plan = _resolve(st, now, trigger, forced)
    elif cfg.admit and st.dirty and st.queue and _might_fit(st):
        st, plan = _admit(st, now, forced)
    else:  # the cheap path: nothing to solve
        plan = Plan(now, st.allocation, tuple(forced), stale=st.stale, error=st.error)
        if st.dirty:
            st = replace(st, dirty=False)  # nothing waiting could fit: wait for the next event
    if plan.actions:
        st = replace(st, plan=plan)
    return replace(st, time=now, steps=st.steps + 1), plan


def _decide(st: ControllerState, now: float, fresh: bool) -> Trigger | None:
    """Why to re-solve now, if at all. ``fresh``: a fresh observation arrived at this step."""
    if st.drift.last_resolve is None and st.queue and st.plan is None:
        return Trigger("initial", f"{len(st.queue)} jobs waiting at start")
    cfg = st.config
    trigger = drift_mod.decide(st.drift, now, len(st.queue), cfg.drift)
    if trigger is not None and st.stale and trigger.kind in ("drift", "node-drift"):
        log.info("drift trigger ignored while monitoring data is stale (%s)", st.error)
        return None
    rs = cfg.right_size
    if trigger is None and rs is not None and fresh and st.queue and st.usage:
        last = st.drift.last_resolve
        if last is None or now - last >= cfg.drift.min_interval:
            found = rightsize.candidates(st.jobs, st.allocation.by_job(), {n.name: n for n in st.nodes}, st.usage, rs)
            if found:
                return Trigger("right-size", f"{', '.join(sorted(found))} could share their GPUs while jobs wait")
    return trigger


# Events ---------------------------------------------------------------------------------------


def _apply_events(st: ControllerState, now: float, events: Sequence[Event], forced: list[Action]) -> ControllerState:
    jobs = dict(st.jobs)
    queue = list(st.queue)
    started = dict(st.started)
    since = dict(st.waiting_since)
    requested = dict(st.requested)
    usage = dict(st.usage)
    by_job = st.allocation.by_job()
    nodes = list(st.nodes)
    dstate = st.drift
    nodes_changed = False
    for event in events:
        if not isinstance(event, Event):
            log.warning("ignored %r: not an Event", event)
            continue
        if event.kind is EventKind.ARRIVAL and event.job is not None:
            if event.job.name in jobs:
                log.warning("arrival of job %r ignored: a job of that name is already known", event.job.name)
                continue
            jobs[event.job.name] = event.job
            queue.append(event.job.name)
            since[event.job.name] = now
            dstate = drift_mod.note_arrival(dstate, event.job)
        elif event.kind is EventKind.COMPLETION:
            name = event.name
            if name in by_job:
                freed = sum(len(p.gpus) * p.gpu_milli for p in by_job.pop(name))
                dstate = drift_mod.note_freed(dstate, freed)
            elif name in queue:
                queue.remove(name)
            else:
                log.debug("completion of unknown job %r ignored", name)
                continue
            jobs.pop(name, None)
            started.pop(name, None)
            since.pop(name, None)
            requested.pop(name, None)
            usage.pop(name, None)
        elif event.kind is EventKind.NODE_LOST:
            if not any(n.name == event.name for n in nodes):
                log.debug("loss of unknown node %r ignored", event.name)
                continue
            nodes = [n for n in nodes if n.name != event.name]
            nodes_changed = True
            for name in [j for j, ps in by_job.items() if any(p.node == event.name for p in ps)]:
                lost = tuple(by_job.pop(name))
                forced.append(
                    Action(ActionKind.PREEMPT, name, f"node {event.name!r} was lost; the job waits again", (), lost)
                )
                queue.append(name)
                started.pop(name, None)
                since[name] = now
            dstate = drift_mod.note_node(dstate, Trigger("node-lost", f"node {event.name!r} lost"))
        elif event.kind is EventKind.NODE_ADDED and event.node is not None:
            if any(n.name == event.node.name for n in nodes):
                log.warning("node %r added twice; ignored", event.node.name)
                continue
            nodes.append(event.node)
            nodes_changed = True
            dstate = drift_mod.note_node(dstate, Trigger("node-added", f"node {event.node.name!r} added"))
        else:
            log.warning("ignored malformed event %r", event)
    queue.sort(key=lambda n: jobs[n].arrival)  # stable: equal arrivals keep their order
    placements = tuple(p for ps in by_job.values() for p in ps)
    unplaced = tuple(u for u in st.allocation.unplaced if u.job in jobs and u.job not in by_job)
    allocation = st.allocation.replace(placements=placements, unplaced=unplaced)
    out = replace(
        st,
        jobs=MappingProxyType(jobs),
        queue=tuple(queue),
        started=MappingProxyType(started),
        waiting_since=MappingProxyType(since),
        requested=MappingProxyType(requested),
        usage=MappingProxyType(usage),
        drift=dstate,
        dirty=True,
    )
    if nodes_changed:
        return replace(out, allocation=allocation)._with_nodes(tuple(nodes))
    return out._with_allocation(allocation)


# Observations ---------------------------------------------------------------------------------


def _observe(st: ControllerState, obs: Observation) -> ControllerState:
    if not obs.stale and not (isinstance(obs.time, int | float) and math.isfinite(obs.time)):
        obs = Observation.missing(0.0, f"observation time {obs.time!r} is not a finite number")
    if obs.stale:
        if not st.stale:
            log.warning("monitoring data is stale, keeping the last plan: %s", obs.error or "no detail")
        return replace(st, stale=True, error=obs.error or "stale observation")
    if st.stale:
        log.info("monitoring data is fresh again")
    n = len(st.nodes)
    seen = drift_mod.observed(st.node_index, obs, n)
    reading = drift_mod.measure(st.capacity, st.planned, seen, st.config.drift)
    dstate = drift_mod.smooth(st.drift, reading, obs.time, st.config.drift)
    usage = st.usage
    rs = st.config.right_size
    if rs is not None and obs.jobs:
        usage = rightsize.track(usage, obs, st.running, rs)
    return replace(st, drift=dstate, stale=False, error="", usage=usage)


# Re-solve -------------------------------------------------------------------------------------


def _window(st: ControllerState) -> list[str]:
    """The queued jobs one solve considers: by priority (highest first; tiered with ``duration_tiers``),
    then arrival."""
    if len(st.queue) <= st.config.max_window:
        return list(st.queue)
    thresholds = st.config.duration_tiers
    levels = len(thresholds) + 1

    def rank(n: str) -> tuple[int, float]:
        job = st.jobs[n]
        tier = tiers_mod.tier_of(job.duration, thresholds) if thresholds else 0
        return (-(job.priority * levels + levels - 1 - tier), job.arrival)

    ranked = sorted(st.queue, key=rank)
    chosen = set(ranked[: st.config.max_window])
    return [n for n in st.queue if n in chosen]


def _resolve(st: ControllerState, now: float, trigger: Trigger, forced: list[Action]) -> tuple[ControllerState, Plan]:
    cfg = st.config
    log.info("re-solve at %.1f: %s", now, trigger)
    actions = list(forced)
    resized: dict[str, Job] = {}
    if cfg.right_size is not None:
        st, resize_actions, resized = _right_size(st, cfg.right_size, trigger)
        actions += resize_actions
    st, plan = _place(st, now, trigger, actions, allow_migration=cfg.allow_migration, horizon=cfg.horizon)
    plan = replace(plan, resized=MappingProxyType(resized))
    st = replace(st, drift=drift_mod.after_resolve(st.drift, now, cfg.drift), resolves=st.resolves + 1)
    return st, plan


def _admit(st: ControllerState, now: float, forced: list[Action]) -> tuple[ControllerState, Plan]:
    trigger = Trigger("admit", f"{len(st.queue)} jobs waiting")
    cfg = st.config
    return _place(st, now, trigger, list(forced), allow_migration=False, horizon=cfg.horizon, exact=cfg.admit_exact)


def _place(
    st: ControllerState,
    now: float,
    trigger: Trigger,
    actions: list[Action],
    *,
    allow_migration: bool,
    horizon: HorizonConfig | None,
    exact: bool = True,
) -> tuple[ControllerState, Plan]:
    """Solve the window and turn the answer into actions; the state's allocation becomes the answer."""
    cfg = st.config
    started_at = time.perf_counter()
    window = _window(st)
    hplan: HorizonPlan | None = None
    error = ""
    try:
        problem = st.solve_view(window, now)
    except ProblemError as err:  # a job the cluster cannot describe: keep everything as it is
        log.error("cannot build the window problem: %s", err)
        plan = Plan(now, st.allocation, tuple(actions), trigger, stale=st.stale, error=str(err))
        return replace(st, dirty=False), plan
    candidates = window
    if horizon is not None and window:
        try:
            hplan = plan_horizon(
                problem,
                remaining=st.remaining(now),
                config=horizon,
                time_limit=max(0.01, min(horizon.time_limit, cfg.budget * cfg.horizon_share)),
            )
            # Commit only what starts now; jobs no single node group could hold are tried as they come.
            chosen = set(hplan.start_now) | set(hplan.ungrouped)
            candidates = [n for n in window if n in chosen]
            problem = st.solve_view(candidates, now)
        except Exception as err:  # a solver failure must not stop the loop: plain packing instead
            log.exception("horizon model failed; packing the whole window instead")
            error = f"horizon model failed: {err}"
    if not candidates and not allow_migration:  # the horizon starts nothing now and nothing may move
        plan = Plan(now, st.allocation, tuple(actions), trigger, stale=st.stale, error=error, horizon=hplan)
        return replace(st, dirty=False), plan
    budget_left = max(0.01, cfg.budget - (time.perf_counter() - started_at))
    answer, method, fallback, solve_error = _solve(
        problem, cfg, budget_left, allow_migration, exact=exact, round_=st.steps
    )
    error = error or solve_error
    if answer is None:
        plan = Plan(now, st.allocation, tuple(actions), trigger, stale=st.stale, error=error, horizon=hplan)
        return replace(st, dirty=False), plan
    answer = _cap_disruptions(problem, answer, cfg.max_migrations, cfg)
    st2, changes = _commit(st, now, answer, problem, trigger, method, hplan)
    # Jobs left out of the horizon's commit are still waiting: list them as unplaced with a reason.
    if hplan is not None:
        deferred = [n for n in window if n not in candidates]
        more = tuple(Unplaced(n, "not selected", "the horizon model starts it later") for n in deferred)
        st2 = replace(st2, allocation=st2.allocation.replace(unplaced=st2.allocation.unplaced + more))
    plan = Plan(
        now,
        st2.allocation,
        tuple(actions) + tuple(changes),
        trigger,
        method=method,
        fallback=fallback,
        solve_time=time.perf_counter() - started_at,
        gap=answer.gap,
        stale=st.stale,
        error=error,
        horizon=hplan,
    )
    return replace(st2, dirty=False), plan


def _solve(
    problem: Problem, cfg: ControllerConfig, budget: float, allow_migration: bool, *, exact: bool, round_: int = 0
) -> tuple[Allocation | None, str, bool, str]:
    """The method's answer, or the fallback heuristic's when it has none; (None, ...) if both fail.
    ``round_`` (the controller's step count) rotates the ``round-robin`` ordering."""
    from optalloc.solve import solve

    if exact and cfg.method != cfg.fallback:
        try:
            answer = solve(
                problem,
                cfg.method,
                time_limit=budget,
                allow_migration=allow_migration,
                workers=cfg.workers,
                seed=cfg.seed,
                order=cfg.queue_order,
                round=round_,
                warm_start=cfg.warm_start,
                fragmentation_guide=cfg.fragmentation_guide,
            )
            if answer.status.has_solution:
                return answer, answer.method or cfg.method, False, ""
            log.warning(
                "method %s returned %s within %.2fs; falling back to %s",
                cfg.method,
                answer.status.value,
                budget,
                cfg.fallback,
            )
        except Exception as err:  # any engine failure: the heuristic must still answer
            log.exception("method %s failed; falling back to %s", cfg.method, cfg.fallback)
            first_error = f"{cfg.method} failed: {err}"
        else:
            first_error = f"{cfg.method} returned {answer.status.value}"
    else:
        first_error = ""
    try:
        answer = solve(problem, cfg.fallback, allow_migration=False, seed=cfg.seed, order=cfg.queue_order, round=round_)
    except Exception as err:
        log.exception("fallback %s failed; keeping the current allocation", cfg.fallback)
        return None, cfg.fallback, True, f"{first_error}; {cfg.fallback} failed: {err}".strip("; ")
    return answer, answer.method or cfg.fallback, bool(first_error), first_error


def _key(placements: Sequence[Placement]) -> list[tuple[Any, ...]]:
    return sorted((p.node, p.gpus, p.gpu_milli) for p in placements)


def _cap_disruptions(problem: Problem, answer: Allocation, cap: int, cfg: ControllerConfig) -> Allocation:
    """``answer`` with at most ``cap`` running jobs moved or preempted; the others stay where they run.

    Moves beyond the cap are undone (the job keeps its old placements); a start or move that no longer
    fits once that is done is dropped; the fallback heuristic then places what it can in what is left.
    """
    old = problem.current.by_job() if problem.current is not None else {}
    new = answer.by_job()
    moved = [j for j in old if j in new and _key(old[j]) != _key(new[j])]
    stopped = [j for j in old if j not in new]
    if len(moved) + len(stopped) <= cap:
        return answer
    disrupted = sorted(moved + stopped, key=lambda j: (len(old[j]), j))
    allowed = set(disrupted[:cap])
    log.info("plan moves %d running jobs; capped at %d", len(disrupted), cap)
    state = ClusterState.empty(problem)
    kept: list[Placement] = []
    for j, ps in old.items():
        if j not in allowed:
            for p in ps:
                state.apply(p, -1)
            kept += ps
    for j in sorted(allowed):
        if j in new:
            if _take(state, new[j]):
                kept += new[j]
            elif _take(state, old[j]):
                kept += old[j]
    for j, ps in new.items():
        if j not in old and _take(state, ps):
            kept += ps
    from optalloc.solve import solve

    held = Allocation(tuple(kept), method="capped", status=Status.FEASIBLE)
    try:
        refill = solve(
            problem.replace(current=held), cfg.fallback, allow_migration=False, seed=cfg.seed, order=cfg.queue_order
        )
    except Exception:
        log.exception("refill after capping failed; keeping the capped placements only")
        placed = {p.job for p in kept}
        left = tuple(Unplaced(j.name, "not selected", "migration cap") for j in problem.jobs if j.name not in placed)
        return Allocation(tuple(kept), left, method=answer.method, status=Status.FEASIBLE)
    return refill.replace(method=f"{answer.method}+cap", bound=answer.bound)


def _take(state: ClusterState, placements: Sequence[Placement]) -> bool:
    """Take ``placements`` from ``state`` if they all fit; leave ``state`` unchanged otherwise."""
    for p in placements:
        state.apply(p, -1)
    rows = [state.problem.node_index[p.node] for p in placements]
    ok = bool((state.cpu[rows] >= 0).all() and (state.memory[rows] >= 0).all())
    for p in placements:
        n = state.problem.node_index[p.node]
        for g in p.gpus:
            if state.gpu[n, g] < 0 or state.gpu_mem[n, g] < 0:
                ok = False
    if not ok:
        for p in placements:
            state.apply(p, +1)
    return ok


def _commit(
    st: ControllerState,
    now: float,
    answer: Allocation,
    problem: Problem,
    trigger: Trigger,
    method: str,
    hplan: HorizonPlan | None,
) -> tuple[ControllerState, list[Action]]:
    """Adopt ``answer`` as what runs, and list the actions that lead there from the old allocation."""
    problems = verify(problem, answer)
    if problems:  # cannot happen with verified engines; never adopt an invalid allocation
        log.error("refusing an invalid allocation from %s: %s", method, "; ".join(map(str, problems[:3])))
        return st, []
    old = st.allocation.by_job()
    new = answer.by_job()
    actions: list[Action] = []
    why = f"{trigger.kind} re-solve by {method}" if trigger.kind != "admit" else f"admitted by {method}"
    for name in new:
        if name not in old:
            wait = now - st.waiting_since.get(name, now)
            reason = f"{why}; waited {wait:.0f}s"
            if hplan is not None and name in hplan.start_now:
                reason += "; the horizon model starts it now"
            actions.append(Action(ActionKind.START, name, reason, tuple(new[name])))
        elif _key(old[name]) != _key(new[name]):
            before = Counter(p.node for p in old[name])
            after = Counter(p.node for p in new[name])
            where = (
                "to other GPUs on the same nodes" if before == after else f"from {sorted(before)} to {sorted(after)}"
            )
            actions.append(
                Action(ActionKind.MIGRATE, name, f"{why}: moved {where}", tuple(new[name]), tuple(old[name]))
            )
    for name in old:
        if name not in new:
            actions.append(
                Action(ActionKind.PREEMPT, name, f"{why}: its resources serve higher-value jobs", (), tuple(old[name]))
            )
    started = dict(st.started)
    since = dict(st.waiting_since)
    for a in actions:
        if a.kind is ActionKind.START:
            started[a.job] = now
            since.pop(a.job, None)
        elif a.kind is ActionKind.PREEMPT:
            started.pop(a.job, None)
            since[a.job] = now
    running = answer.placed_jobs
    queue = tuple(n for n in (*st.queue, *(a.job for a in actions if a.kind is ActionKind.PREEMPT)) if n not in running)
    queue = tuple(sorted(dict.fromkeys(queue), key=lambda n: st.jobs[n].arrival))
    allocation = Allocation(
        tuple(answer.placements),
        tuple(u for u in answer.unplaced if u.job in queue),
        method=answer.method or method,
        status=answer.status,
        objective=answer.objective,
        bound=answer.bound,
        wall_time=answer.wall_time,
        stats=answer.stats,
    )
    out = replace(st, queue=queue, started=MappingProxyType(started), waiting_since=MappingProxyType(since))
    out = out._with_allocation(allocation)
    return out, actions


# Right-sizing ---------------------------------------------------------------------------------


def _right_size(
    st: ControllerState, rs: RightSizing, trigger: Trigger
) -> tuple[ControllerState, list[Action], dict[str, Job]]:
    by_job = st.allocation.by_job()
    found = rightsize.candidates(st.jobs, by_job, {n.name: n for n in st.nodes}, st.usage, rs)
    if not found:
        return st, [], {}
    jobs = dict(st.jobs)
    requested = dict(st.requested)
    actions: list[Action] = []
    for name, rz in found.items():
        new_ps = tuple(replace(p, gpu_milli=rz.share) for p in by_job[name])
        requested.setdefault(name, rz.before)
        jobs[name] = rz.job
        actions.append(
            Action(ActionKind.RESIZE, name, rz.reason(f"{trigger.kind} re-solve"), new_ps, tuple(by_job[name]))
        )
        by_job[name] = list(new_ps)
    allocation = st.allocation.replace(placements=tuple(p for ps in by_job.values() for p in ps))
    out = replace(st, jobs=MappingProxyType(jobs), requested=MappingProxyType(requested))._with_allocation(allocation)
    log.info("right-sized %d jobs: %s", len(found), ", ".join(sorted(found)))
    return out, actions, {name: rz.job for name, rz in found.items()}


def _might_fit(st: ControllerState) -> bool:
    """Cheap test before an admission: could any waiting job fit the cluster's total free capacity?"""
    free = st.capacity.sum(axis=0) - st.planned.sum(axis=0)  # gpu milli, gpu mem, cpu, memory
    for name in st.queue:
        job = st.jobs[name]
        need = job.min_replicas or job.replicas
        if (
            job.gpu_demand * need <= free[0] + 1e-9
            and job.cpu * need <= free[2] + 1e-9
            and job.memory * need <= free[3] + 1e-9
        ):
            return True
    return False


# Helpers for drivers --------------------------------------------------------------------------


def events_between(before: Problem, after: Problem) -> list[Event]:
    """The events that turn ``before`` into ``after`` (new jobs arrive, vanished jobs complete, nodes
    appear or disappear): what a driver that re-reads a problem file feeds the step."""
    out: list[Event] = []
    old_nodes = {n.name: n for n in before.nodes}
    new_nodes = {n.name: n for n in after.nodes}
    out += [Event.node_lost(name) for name in old_nodes if name not in new_nodes]
    out += [Event.node_added(node) for name, node in new_nodes.items() if name not in old_nodes]
    old_jobs = {j.name for j in before.jobs}
    new_jobs = {j.name: j for j in after.jobs}
    out += [Event.completion(name) for name in old_jobs if name not in new_jobs]
    out += [Event.arrival(job) for name, job in new_jobs.items() if name not in old_jobs]
    return out
