"""The trace-driven simulator: replay a workload through the production controller step.

:func:`simulate` plays a :class:`~optalloc.sim.workloads.Scenario` against one
:class:`~optalloc.sim.policies.Policy` (:func:`optalloc.sim.sweep.compare` plays it against several,
serially, in a process pool or on Ray). Every
policy -- the heuristics as much as the exact and adaptive ones -- is a configuration of
:func:`optalloc.adaptive.controller.step`, driven here exactly as a production driver drives it: the
simulator owns the clock and the world, the controller owns every decision.

A discrete-event loop over a heap of timestamped events:

- **arrival** (the job's ``arrival``): the job joins the controller's queue (``Event.arrival``). A job no
  node of the cluster could ever host is *rejected* on arrival (counted as unplaceable, never queued).
- **completion**: a running job has done all its work (``Event.completion``). Work: a job must run
  ``runtime`` seconds on the hardware it lands on (the slowest node of a gang sets the pace).
- **tick** every ``tick`` seconds: the controller step receives an :class:`Observation` of what the
  running jobs really use (:mod:`~optalloc.sim.usage` profiles), so that its drift detection
  sees real drift. Ticks are skipped while the cluster is idle and nothing is waiting.
- **failure** / **repair** (optional, :class:`FailureModel`): a node is lost (``Event.node_lost``: its
  jobs go back to the queue) and comes back ``repair`` seconds later (``Event.node_added``).

Events at the same time are handled in one step, in the order completions, repairs, failures,
arrivals, tick (so that capacity freed at ``t`` serves jobs arriving at ``t``). With ``react=True``
(default) the controller steps at every event time; with ``react=False`` events wait for the next
tick (a periodic scheduler, like Gavel's rounds).

The plan of each step is carried out at once: ``start`` runs a job, ``preempt`` stops it (it waits
again), ``migrate`` stops and restarts it elsewhere. A job that restarts (after a preemption, a
migration or a node failure) pays ``restart_penalty`` seconds without progress; with
``keep_progress=True`` (default: jobs checkpoint) it keeps the work done so far, otherwise it starts
over. Progress is counted in fractions of the job's work, so a job moved to faster GPUs finishes
sooner.

A time-share policy (``policy.timeshare`` set: :mod:`optalloc.sim.timeshare`) is driven through the
time-share loop instead of the controller step; the simulator ticks at least once per round for it.

Deterministic for a seed with the heuristic policies (usage profiles and failures are drawn from
``seed`` over the scenario's job and node lists, the same for every policy); the exact policies stop
CP-SAT on a wall-clock budget, so their runs can differ slightly from one run to the next.
Long runs report progress through the optional ``progress`` callback (the CLI draws a bar with it).

This module is the loop; the pieces it drives are small modules of their own: :mod:`~optalloc.sim.events`
(the heap), :mod:`~optalloc.sim.books` (jobs and free resources), :mod:`~optalloc.sim.sampling`
(observations, the timeline, fragmentation), :mod:`~optalloc.sim.checks` (``verify=True``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from optalloc.adaptive import ActionKind, ControllerState, Event, Observation, Plan, step
from optalloc.core import MILLI, Placement, Problem, ProblemError, SolverError
from optalloc.sim import checks
from optalloc.sim.books import REJECTED, RUNNING, WAITING, Books
from optalloc.sim.config import SimConfig
from optalloc.sim.direct import DirectEngine
from optalloc.sim.events import (
    ARRIVAL,
    COMPLETION,
    FAILURE,
    REPAIR,
    TICK,
    EventHeap,
    completion_of,
    completion_payload,
    is_current,
)
from optalloc.sim.metrics import Counters, JobTable, compute
from optalloc.sim.policies import Policy
from optalloc.sim.result import Progress, SimResult
from optalloc.sim.sampling import Sampler
from optalloc.sim.timeshare import TimeshareEngine
from optalloc.sim.workloads import Scenario

log = logging.getLogger(__name__)


def simulate(
    scenario: Scenario,
    policy: Policy,
    config: SimConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> SimResult:
    """Replay ``scenario`` through the controller configured by ``policy`` (see the module docstring)."""
    from optalloc.solve import preload

    cfg = config or SimConfig()
    if policy.kind == "exact":  # imports before the first step, not within its budget (it would cut it)
        preload(policy.config.method)
    started = time.perf_counter()
    run = Replay(scenario, policy, cfg, progress)
    run.loop()
    wall = time.perf_counter() - started
    return run.result(wall)


@dataclass(frozen=True)
class Pending:
    """A step the decision maker is to take: at ``time``, with ``observation`` (at ticks, controller
    engine) and ``events``; ``tick``: the step is a tick."""

    time: float
    observation: Observation | None
    events: tuple[Event, ...]
    tick: bool


class Replay:
    """One simulation: the loop over the event heap, handing each timestamp's events to the decision
    maker (the controller step, or the direct engine) and carrying out its plan on the books.

    :func:`simulate` runs it to the end (:meth:`loop`). A driver that takes the decisions itself (the
    environment of :mod:`optalloc.rl`) calls :meth:`advance` for the next step's inputs, steps the
    controller (``state``) as it likes, hands the plan to :meth:`apply`, and reads the books
    (``books``), the clock (``now``) and ``area``: the integrals so far of the number of jobs waiting,
    of jobs running and of GPUs allocated over time (job-seconds, GPU-seconds).
    """

    def __init__(
        self,
        scenario: Scenario,
        policy: Policy,
        cfg: SimConfig | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        cfg = cfg or SimConfig()
        self.scenario, self.policy, self.cfg, self.progress = scenario, policy, cfg, progress
        sc = scenario
        m, n = len(sc.jobs), len(sc.nodes)
        problem = sc.problem
        self.job_index = sc.job_index
        self.names = tuple(j.name for j in sc.jobs)
        self.node_index = problem.node_index
        self.hostable = sc.hostable
        self.books = Books(problem, cfg.profile.draw(m, cfg.seed))
        self.sampler = Sampler(sc, self.books)
        # The controller (or the direct engine).
        self.state = ControllerState.initial(Problem(sc.nodes, ()), policy.config)
        self.direct: DirectEngine | TimeshareEngine | None = None
        self.tick = cfg.tick
        if policy.timeshare is not None:  # the time-share loop decides instead of the controller
            self.direct = TimeshareEngine(sc, policy, self.books.remaining, seed=cfg.seed)
            length = policy.timeshare.round_length
            self.tick = min(cfg.tick, length) if cfg.tick else length  # a tick at least every round
        elif cfg.engine == "direct":
            self.direct = DirectEngine(sc, policy)
        # Events: every arrival, the first tick, node failures.
        self.events = EventHeap()
        arrivals = problem.job_arrival
        for i in np.argsort(arrivals, kind="stable").tolist():
            self.events.push(float(arrivals[i]), ARRIVAL, i)
        self.t_start = float(arrivals.min()) if m else 0.0
        self.deferred: list[Event] = []
        if self.tick and m:
            self.events.push(self.t_start + self.tick, TICK, 0)
        self.failure_rng: list[np.random.Generator] = []
        if cfg.failures is not None:
            fm = cfg.failures
            if fm.mtbf is not None:
                self.failure_rng = [np.random.default_rng([fm.seed, k]) for k in range(n)]
                for k in range(n):
                    self.events.push(self.t_start + float(self.failure_rng[k].exponential(fm.mtbf)), FAILURE, k)
            for i, (node, at, _) in enumerate(fm.outages):
                if node not in self.node_index:
                    raise ProblemError(f"failures.outages[{i}]", node, "is not a node of the scenario")
                self.events.push(float(at), FAILURE, n + i)
        # Counters.
        self.counts = {"arrivals": 0, "completions": 0, "ticks": 0, "failures": 0, "repairs": 0}
        self.steps = 0
        self.fallbacks: dict[str, int] = {}  # by reason
        self.errors = 0
        self.solve_time = 0.0
        self.controller_time = 0.0
        self.plans: list[Plan] = []
        self.now = self.t_start
        self.area = np.zeros(3)
        self._last_report = 0.0

    def _alive(self) -> bool:
        b = self.books
        if b.pending or b.running or self.deferred:
            return True
        return bool(b.waiting and b.down)  # a repair may still let the waiting jobs run

    # Main loop ------------------------------------------------------------------------------
    def loop(self) -> None:
        while (pending := self.advance()) is not None:
            self.take(pending)
        self.finish()

    def advance(self) -> Pending | None:
        """Move the clock to the next time the decision maker steps and return that step's inputs
        (None: the run is over). Events that need no step (outdated completions; with ``react=False``,
        events before the next tick) are handled on the way."""
        cfg = self.cfg
        until = cfg.until
        heap = self.events
        while heap and self._alive():
            t = heap.next_time
            if until is not None and t > until:
                return None
            self._integrate(t)
            self.now = t
            events: list[Event] = []
            tick = False
            for kind, payload in heap.pop_at(t):
                if kind == COMPLETION:
                    self._complete(payload, t, events)
                elif kind == ARRIVAL:
                    self._arrive(payload, events)
                elif kind == TICK:
                    tick = True
                elif kind == FAILURE:
                    self._fail(payload, t, events)
                else:
                    self._repair(payload, t, events)
            if not events and not tick:
                continue  # only outdated completions
            if not cfg.react and not tick:
                self.deferred += events
                self.sampler.sample(t)
                continue
            if self.deferred:
                events = self.deferred + events
                self.deferred = []
            if tick:
                self.books.refresh_usage(t)
            observation = self.sampler.observe(t) if tick and self.direct is None else None
            return Pending(t, observation, tuple(events), tick)
        return None

    def take(self, pending: Pending) -> None:
        """Take the step ``pending`` with the policy's own decision maker and carry out its plan."""
        before = time.perf_counter()
        if self.direct is not None:
            plan = self.direct.step(pending.time, pending.events)
        else:
            self.state, plan = step(self.state, pending.time, pending.observation, pending.events)
        self.controller_time += time.perf_counter() - before
        self.apply(pending, plan)

    def apply(self, pending: Pending, plan: Plan, state: ControllerState | None = None) -> None:
        """Carry out ``plan``, the answer to ``pending`` (``state``: the controller's state after it,
        when a driver stepped the controller itself), then move on to the next tick."""
        if state is not None:
            self.state = state
        self._step(pending.time, plan)
        if pending.tick:
            self.counts["ticks"] += 1
            self._next_tick(pending.time)
        self._report(pending.time)

    def finish(self) -> None:
        """Report the end of the run (the progress callback)."""
        if self.progress is not None:
            self.progress(
                Progress(self.policy.name, self.books.done, len(self.scenario.jobs), self._events(), self.now)
            )

    def _integrate(self, t: float) -> None:
        """Add the time since the last event to the areas under the waiting, running and allocated-GPU
        curves (they change only at events)."""
        dt = t - self.now
        if dt > 0:
            b = self.books
            self.area += dt * np.array((b.waiting, b.running, b.alloc_total[0] / MILLI))

    def _next_tick(self, t: float) -> None:
        tick = self.tick
        nxt = t + tick
        b = self.books
        if not (b.running or b.waiting or self.deferred) and b.pending:
            # Idle: jump to the first tick after the next arrival.
            k = math.ceil((self.events.next_arrival() - self.t_start) / tick)
            nxt = max(nxt, self.t_start + k * tick)
        self.events.push(nxt, TICK, 0)

    def _step(self, t: float, plan: Plan) -> None:
        self.steps += 1
        self.solve_time += plan.solve_time
        if plan.fallback is not None:
            self.fallbacks[plan.fallback.value] = self.fallbacks.get(plan.fallback.value, 0) + 1
        if plan.error:
            self.errors += 1
        if plan.actions:
            self._carry_out(plan, t)
            if self.cfg.keep_plans:
                self.plans.append(plan)
        if self.cfg.verify:
            if self.direct is not None:
                checks.check_direct(self.policy.name, plan.time, self.books, self.direct)
            else:
                checks.check_controller(self.policy.name, plan.time, self.books, self.state, self.names)
        self.sampler.sample(t)

    # Events ---------------------------------------------------------------------------------
    def _arrive(self, j: int, events: list[Event]) -> None:
        self.counts["arrivals"] += 1
        if not self.books.arrive(j, hostable=bool(self.hostable[j])):
            log.debug("job %s fits no node of the cluster: rejected", self.scenario.jobs[j].name)
            return
        events.append(Event.arrival(self.scenario.jobs[j]))

    def _complete(self, payload: int, t: float, events: list[Event]) -> None:
        j, version = completion_of(payload)
        b = self.books
        if b.status[j] != RUNNING or not is_current(int(b.version[j]), version):
            return  # the run this completion belonged to was stopped
        b.complete(j, t)
        self.counts["completions"] += 1
        events.append(Event.completion(self.scenario.jobs[j].name))

    def _fail(self, payload: int, t: float, events: list[Event]) -> None:
        fm = self.cfg.failures
        assert fm is not None
        n = len(self.scenario.nodes)
        if payload < n:  # a random failure: the node is back after fm.repair, then fails again later
            k, down, chain = payload, fm.repair, True
        else:  # a scheduled outage
            name, _, down = fm.outages[payload - n]
            k, chain = self.node_index[name], False
        if not self.books.node_down(k):  # already down: a random failure redraws from now on
            if chain:
                assert fm.mtbf is not None
                self.events.push(t + float(self.failure_rng[k].exponential(fm.mtbf)), FAILURE, k)
            return
        self.counts["failures"] += 1
        events.append(Event.node_lost(self.scenario.nodes[k].name))
        self.events.push(t + down, REPAIR, k if chain else n + k)

    def _repair(self, payload: int, t: float, events: list[Event]) -> None:
        fm = self.cfg.failures
        assert fm is not None
        n = len(self.scenario.nodes)
        k = payload % n if n else 0
        self.books.node_up(k)
        self.counts["repairs"] += 1
        events.append(Event.node_added(self.scenario.nodes[k]))
        if payload < n and fm.mtbf is not None:
            self.events.push(t + float(self.failure_rng[k].exponential(fm.mtbf)), FAILURE, k)

    # Carrying out a plan ----------------------------------------------------------------------
    def _carry_out(self, plan: Plan, t: float) -> None:
        index = self.job_index
        b = self.books
        for action in plan.actions:
            j = index.get(action.job)
            if j is None:
                raise SolverError(f"the controller acted on job {action.job!r}, which the scenario does not have")
            kind = action.kind
            if kind is ActionKind.START:
                if b.status[j] != WAITING:
                    raise SolverError(f"the controller started job {action.job!r}, which is not waiting")
                self._start(j, action.placements, t)
            elif kind is ActionKind.PREEMPT:
                if b.status[j] != RUNNING:
                    raise SolverError(f"the controller preempted job {action.job!r}, which is not running")
                lost = any(not b.up[self.node_index[p.node]] for p in action.previous)
                b.stop(j, t, keep_progress=self.cfg.keep_progress)
                if lost:
                    b.failures[j] += 1
                else:
                    b.preemptions[j] += 1
            elif kind in (ActionKind.MIGRATE, ActionKind.RESIZE):
                if b.status[j] != RUNNING:
                    raise SolverError(f"the controller moved job {action.job!r}, which is not running")
                b.stop(j, t, keep_progress=self.cfg.keep_progress)
                self._start(j, action.placements, t)
                b.migrations[j] += 1

    def _start(self, j: int, placements: Sequence[Placement], t: float) -> None:
        length = self.scenario.runtime_on(j, [self.node_index[p.node] for p in placements])
        if not math.isfinite(length):
            raise SolverError(
                f"job {self.scenario.jobs[j].name!r} was placed on {sorted({p.node for p in placements})}, "
                "where it cannot run (infinite runtime): the scenario should restrict its gpu_models"
            )
        restart = not math.isnan(self.books.first_start[j])
        penalty = self.cfg.restart_penalty if restart else 0.0
        finish = self.books.start(j, placements, t, length, penalty)
        self.events.push(finish, COMPLETION, completion_payload(j, int(self.books.version[j])))

    def _events(self) -> int:
        return sum(self.counts.values())

    def _report(self, t: float) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self._last_report >= 0.1:
            self._last_report = now
            self.progress(Progress(self.policy.name, self.books.done, len(self.scenario.jobs), self._events(), t))

    # Result ---------------------------------------------------------------------------------
    def result(self, wall: float) -> SimResult:
        sc, b = self.scenario, self.books
        end = self.now if self.cfg.until is None else max(self.now, float(self.cfg.until))
        timeline = self.sampler.timeline(end)
        jobs = JobTable(
            tuple(j.name for j in sc.jobs),
            sc.problem.job_arrival,
            b.first_start,
            b.finish,
            b.job_gpus,
            b.preemptions,
            b.migrations,
            b.failures,
            b.status == REJECTED,
        )
        counters = Counters(
            **self.counts,
            steps=self.steps,
            resolves=self.direct.resolves if self.direct is not None else self.state.resolves,
            fallbacks=sum(self.fallbacks.values()),
            fallback_reasons=dict(sorted(self.fallbacks.items())),
            errors=self.errors,
            solve_time=self.solve_time,
            controller_time=self.controller_time,
            wall_time=wall,
        )
        metrics = compute(jobs, timeline, counters, start=self.t_start, end=end)
        return SimResult(
            sc.name,
            self.policy.name,
            self.policy.description,
            jobs,
            timeline,
            counters,
            metrics,
            tuple(self.plans),
            self.cfg,
            self.policy.kind,
        )
