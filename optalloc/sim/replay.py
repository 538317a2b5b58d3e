"""The trace-driven simulator: replay a workload through the production controller step.

:func:`simulate` plays a :class:`~optalloc.sim.workloads.Scenario` against one
:class:`~optalloc.sim.policies.Policy`; :func:`compare` plays it against several. Every
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

Deterministic for a seed with the heuristic policies (usage profiles and failures are drawn from
``seed`` over the scenario's job and node lists, the same for every policy); the exact policies stop
CP-SAT on a wall-clock budget, so their runs can differ slightly from one run to the next.
Long runs report progress through the optional ``progress`` callback (the CLI draws a bar with it).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optalloc.adaptive.controller import ControllerState, step
from optalloc.adaptive.monitor import NodeUsage, Observation
from optalloc.adaptive.plan import ActionKind, Event, Plan
from optalloc.core import MILLI, Placement, Problem, ProblemError, SolverError, Unplaced, verify
from optalloc.sim.direct import DirectEngine
from optalloc.sim.metrics import Counters, JobTable, Metrics, Timeline, compute
from optalloc.sim.policies import Policy
from optalloc.sim.usage import PROFILES, UsageProfile
from optalloc.sim.workloads import Scenario

log = logging.getLogger(__name__)

# Event kinds, in the order they are handled within one timestamp.
COMPLETION, REPAIR, FAILURE, ARRIVAL, TICK = range(5)
# How decisions are taken: the production controller step, or the direct engine (heuristics only).
ENGINES = ("controller", "direct")
# Job status.
FUTURE, WAITING, RUNNING, DONE, REJECTED = range(5)


@dataclass(frozen=True)
class FailureModel:
    """Node failures, random and/or scheduled.

    Random: with ``mtbf`` set, each node fails after an exponential time of mean ``mtbf`` seconds
    (drawn per node from ``seed``, the same for every policy) and is back ``repair`` seconds later, then
    fails again after a new draw. Scheduled: ``outages`` lists ``(node name, time, seconds down)``.
    """

    mtbf: float | None = None
    repair: float = 3600.0
    seed: int = 0
    outages: tuple[tuple[str, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mtbf is not None and not self.mtbf > 0:
            raise ProblemError("failures.mtbf", self.mtbf, "is not a positive number of seconds")
        if not self.repair >= 0:
            raise ProblemError("failures.repair", self.repair, "is negative")
        outages: list[tuple[str, float, float]] = []
        for i, outage in enumerate(self.outages):
            try:
                name, at, down = outage
                item = (str(name), float(at), float(down))
            except (TypeError, ValueError):
                raise ProblemError(f"failures.outages[{i}]", outage, "is not (node name, time, seconds down)") from None
            if not isinstance(name, str) or not item[2] >= 0:
                raise ProblemError(f"failures.outages[{i}]", outage, "is not (node name, time, seconds down)")
            outages.append(item)
        object.__setattr__(self, "outages", tuple(outages))


@dataclass(frozen=True)
class SimConfig:
    """Knobs of one simulation.

    ``tick``: seconds between controller ticks (each carries an observation; 0 = no ticks).
    ``react``: step at every arrival / completion too (False: only at ticks). ``restart_penalty``:
    seconds without progress after a restart. ``keep_progress``: a restarted job keeps its work done.
    ``usage``: the usage profile (a :class:`UsageProfile` or a preset name). ``seed``: usage draws.
    ``failures``: node failures (None: none). ``until``: stop at this simulated time, seconds (None: when
    every job has finished). ``verify``: check every committed allocation with ``optalloc.verify``
    and the simulator's own books (slow: tests). ``keep_plans``: keep every plan that changed
    something (for inspection). ``engine``: ``controller`` (default: every decision by the production
    step) or ``direct`` (heuristic policies only: the same decisions on one persistent placer, orders
    of magnitude faster; see :mod:`optalloc.sim.direct`).
    """

    tick: float = 60.0
    react: bool = True
    restart_penalty: float = 30.0
    keep_progress: bool = True
    usage: UsageProfile | str = "typical"
    seed: int = 0
    failures: FailureModel | None = None
    until: float | None = None
    verify: bool = False
    keep_plans: bool = False
    engine: str = "controller"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ProblemError("engine", self.engine, f"is not one of {', '.join(ENGINES)}")
        if not (isinstance(self.tick, int | float) and self.tick >= 0):
            raise ProblemError("tick", self.tick, "is not a number of seconds >= 0")
        if not self.react and not self.tick:
            raise ProblemError("react", self.react, "is false with tick=0: the controller would never step")
        if not (isinstance(self.restart_penalty, int | float) and self.restart_penalty >= 0):
            raise ProblemError("restart_penalty", self.restart_penalty, "is not a number of seconds >= 0")
        if isinstance(self.usage, str):
            if self.usage not in PROFILES:
                raise ProblemError("usage", self.usage, f"is not one of {', '.join(PROFILES)}")
            object.__setattr__(self, "usage", PROFILES[self.usage])

    @property
    def profile(self) -> UsageProfile:
        assert isinstance(self.usage, UsageProfile)
        return self.usage


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


def simulate(
    scenario: Scenario,
    policy: Policy,
    config: SimConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> SimResult:
    """Replay ``scenario`` through the controller configured by ``policy`` (see the module docstring)."""
    cfg = config or SimConfig()
    started = time.perf_counter()
    run = _Run(scenario, policy, cfg, progress)
    run.loop()
    wall = time.perf_counter() - started
    return run.result(wall)


def compare(
    scenario: Scenario,
    policies: Sequence[Policy],
    config: SimConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> list[SimResult]:
    """:func:`simulate` for each policy in turn, on the same scenario, seed, usage and failures."""
    return [simulate(scenario, p, config, progress=progress) for p in policies]


class _Run:
    """The mutable books of one simulation (private: one per :func:`simulate` call)."""

    def __init__(
        self, scenario: Scenario, policy: Policy, cfg: SimConfig, progress: Callable[[Progress], None] | None
    ) -> None:
        self.scenario, self.policy, self.cfg, self.progress = scenario, policy, cfg, progress
        sc = scenario
        m, n = len(sc.jobs), len(sc.nodes)
        problem = sc.problem
        self.job_index = sc.job_index
        self.node_index = {node.name: i for i, node in enumerate(sc.nodes)}
        self.hostable = sc.hostable
        self.usage = cfg.profile.draw(m, cfg.seed)
        # Per job.
        self.status = np.full(m, FUTURE, dtype=np.int8)
        self.first_start = np.full(m, np.nan)
        self.finish = np.full(m, np.nan)
        self.work = np.zeros(m)  # fraction of the job's work done before the current run
        self.run_from = np.zeros(m)  # when the current run starts making progress (start + penalty)
        self.run_len = np.full(m, np.inf)  # seconds for the whole work on the current hardware
        self.version = np.zeros(m, dtype=np.int64)
        self.preemptions = np.zeros(m, dtype=np.int64)
        self.migrations = np.zeros(m, dtype=np.int64)
        self.failures_of = np.zeros(m, dtype=np.int64)
        self.placements: dict[int, tuple[Placement, ...]] = {}
        demand = problem.demand  # (m, 3) cpu, memory, gpu milli per replica
        self.job_cpu = demand[:, 0].astype(np.float64)
        self.job_memory = demand[:, 1].astype(np.float64)
        self.job_gpus = (demand[:, 2] * problem.job_replicas).astype(np.float64) / MILLI
        # Per node: free resources (the simulator's own books) and which nodes are up.
        self.capacity = problem.capacity.astype(np.float64)  # (n, 3) cpu, memory, gpu milli
        slots = max(problem.max_gpus, 1)
        self.present = np.arange(slots)[None, :] < problem.node_gpus[:, None]  # (n, slots): GPUs that exist
        self.gpu_free = np.where(self.present, MILLI, -1).astype(np.int64)
        self.cpu_free = problem.capacity[:, 0].copy()
        self.mem_free = problem.capacity[:, 1].copy()
        self.up = np.ones(n, dtype=bool)
        self.node_model = problem.node_model
        self.fragmentation = _fragmentation_model(sc)
        # Rows of the running placements, rebuilt when the allocation changes (observations).
        self._rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.req = np.zeros((m, 3))  # per job: GPU milli, CPU, memory it holds now (all replicas)
        self.frac = np.zeros((m, 3))  # per job: the used fraction of that request (last evaluated)
        self.alloc_total = np.zeros(3)
        self.used_total = np.zeros(3)
        self._cap: tuple[float, float, float] | None = None  # capacity of the nodes up (None: recompute)
        self._frag: float | None = None  # FGD fragmentation of the current free state (None: recompute)
        self._node_frag: np.ndarray | None = None  # per node (None: recompute every node)
        self._frag_dirty: set[int] = set()  # nodes whose free state changed since the last sample
        # The controller (or the direct engine).
        self.state = ControllerState.initial(Problem(sc.nodes, ()), policy.config)
        self.direct = DirectEngine(sc, policy) if cfg.engine == "direct" else None
        # Event heap: (time, kind, sequence, payload).
        self.heap: list[tuple[float, int, int, int]] = []
        self.seq = 0
        arrivals = problem.job_arrival
        for i in np.argsort(arrivals, kind="stable").tolist():
            self._push(float(arrivals[i]), ARRIVAL, i)
        self.pending_arrivals = m
        self.t_start = float(arrivals.min()) if m else 0.0
        self.running = 0
        self.waiting = 0
        self.down = 0
        self.deferred: list[Event] = []
        if cfg.tick and m:
            self._push(self.t_start + cfg.tick, TICK, 0)
        self.failure_rng: list[np.random.Generator] = []
        if cfg.failures is not None:
            fm = cfg.failures
            if fm.mtbf is not None:
                self.failure_rng = [np.random.default_rng([fm.seed, k]) for k in range(n)]
                for k in range(n):
                    self._push(self.t_start + float(self.failure_rng[k].exponential(fm.mtbf)), FAILURE, k)
            for i, (node, at, _) in enumerate(fm.outages):
                if node not in self.node_index:
                    raise ProblemError(f"failures.outages[{i}]", node, "is not a node of the scenario")
                self._push(float(at), FAILURE, n + i)
        # Counters and the timeline.
        self.counts = {"arrivals": 0, "completions": 0, "ticks": 0, "failures": 0, "repairs": 0}
        self.steps = 0
        self.fallbacks = 0
        self.errors = 0
        self.solve_time = 0.0
        self.controller_time = 0.0
        self.samples: list[tuple[float, ...]] = []
        self.plans: list[Plan] = []
        self.now = self.t_start
        self.done = 0
        self._last_report = 0.0

    # Heap -----------------------------------------------------------------------------------
    def _push(self, t: float, kind: int, payload: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, payload))

    def _alive(self) -> bool:
        if self.pending_arrivals or self.running or self.deferred:
            return True
        return bool(self.waiting and self.down)  # a repair may still let the waiting jobs run

    # Main loop ------------------------------------------------------------------------------
    def loop(self) -> None:
        cfg = self.cfg
        until = cfg.until
        heap = self.heap
        while heap and self._alive():
            t = heap[0][0]
            if until is not None and t > until:
                break
            self.now = t
            events: list[Event] = []
            tick = False
            while heap and heap[0][0] == t:
                _, kind, _, payload = heapq.heappop(heap)
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
                self._sample(t)
                continue
            if self.deferred:
                events = self.deferred + events
                self.deferred = []
            if tick:
                self._refresh_usage(t)
            observation = self._observe(t) if tick and self.direct is None else None
            self._step(t, observation, events)
            if tick:
                self.counts["ticks"] += 1
                self._next_tick(t)
            self._report(t)
        if self.progress is not None:
            self.progress(Progress(self.policy.name, self.done, len(self.scenario.jobs), self._events(), self.now))

    def _next_tick(self, t: float) -> None:
        tick = self.cfg.tick
        nxt = t + tick
        if not (self.running or self.waiting or self.deferred) and self.pending_arrivals:
            # Idle: jump to the first tick after the next arrival.
            upcoming = min(e[0] for e in self.heap if e[1] == ARRIVAL)
            k = math.ceil((upcoming - self.t_start) / tick)
            nxt = max(nxt, self.t_start + k * tick)
        self._push(nxt, TICK, 0)

    def _step(self, t: float, observation: Observation | None, events: list[Event]) -> None:
        before = time.perf_counter()
        if self.direct is not None:
            plan = self.direct.step(t, events)
        else:
            self.state, plan = step(self.state, t, observation, events)
        self.controller_time += time.perf_counter() - before
        self.steps += 1
        self.solve_time += plan.solve_time
        if plan.fallback:
            self.fallbacks += 1
        if plan.error:
            self.errors += 1
        if plan.actions:
            self._carry_out(plan, t)
            if self.cfg.keep_plans:
                self.plans.append(plan)
        if self.cfg.verify:
            self._check(plan)
        self._sample(t)

    # Events ---------------------------------------------------------------------------------
    def _arrive(self, j: int, events: list[Event]) -> None:
        self.pending_arrivals -= 1
        self.counts["arrivals"] += 1
        if not self.hostable[j]:
            self.status[j] = REJECTED
            self.done += 1
            log.debug("job %s fits no node of the cluster: rejected", self.scenario.jobs[j].name)
            return
        self.status[j] = WAITING
        self.waiting += 1
        events.append(Event.arrival(self.scenario.jobs[j]))

    def _complete(self, payload: int, t: float, events: list[Event]) -> None:
        j, version = divmod(payload, 1 << 20)
        if self.status[j] != RUNNING or self.version[j] % (1 << 20) != version:
            return  # the run this completion belonged to was stopped
        self._release(j)
        self.status[j] = DONE
        self.finish[j] = t
        self.running -= 1
        self.done += 1
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
        if not self.up[k]:  # already down: a random failure redraws from now on
            if chain:
                assert fm.mtbf is not None
                self._push(t + float(self.failure_rng[k].exponential(fm.mtbf)), FAILURE, k)
            return
        self.up[k] = False
        self._frag = self._cap = self._node_frag = None
        self.down += 1
        self.counts["failures"] += 1
        events.append(Event.node_lost(self.scenario.nodes[k].name))
        self._push(t + down, REPAIR, k if chain else n + k)

    def _repair(self, payload: int, t: float, events: list[Event]) -> None:
        fm = self.cfg.failures
        assert fm is not None
        n = len(self.scenario.nodes)
        k = payload % n if n else 0
        self.up[k] = True
        self._frag = self._cap = self._node_frag = None
        self.down -= 1
        self.counts["repairs"] += 1
        events.append(Event.node_added(self.scenario.nodes[k]))
        if payload < n and fm.mtbf is not None:
            self._push(t + float(self.failure_rng[k].exponential(fm.mtbf)), FAILURE, k)

    # Carrying out a plan ----------------------------------------------------------------------
    def _carry_out(self, plan: Plan, t: float) -> None:
        index = self.job_index
        for action in plan.actions:
            j = index.get(action.job)
            if j is None:
                raise SolverError(f"the controller acted on job {action.job!r}, which the scenario does not have")
            kind = action.kind
            if kind is ActionKind.START:
                if self.status[j] != WAITING:
                    raise SolverError(f"the controller started job {action.job!r}, which is not waiting")
                self._start(j, action.placements, t)
            elif kind is ActionKind.PREEMPT:
                if self.status[j] != RUNNING:
                    raise SolverError(f"the controller preempted job {action.job!r}, which is not running")
                lost = any(not self.up[self.node_index[p.node]] for p in action.previous)
                self._stop(j, t)
                if lost:
                    self.failures_of[j] += 1
                else:
                    self.preemptions[j] += 1
            elif kind in (ActionKind.MIGRATE, ActionKind.RESIZE):
                if self.status[j] != RUNNING:
                    raise SolverError(f"the controller moved job {action.job!r}, which is not running")
                self._stop(j, t)
                self._start(j, action.placements, t)
                self.migrations[j] += 1

    def _start(self, j: int, placements: Sequence[Placement], t: float) -> None:
        nodes = [self.node_index[p.node] for p in placements]
        length = self.scenario.runtime_on(j, nodes)
        if not math.isfinite(length):
            raise SolverError(
                f"job {self.scenario.jobs[j].name!r} was placed on {sorted({p.node for p in placements})}, "
                "where it cannot run (infinite runtime): the scenario should restrict its gpu_models"
            )
        restart = not math.isnan(self.first_start[j])
        if not restart:
            self.first_start[j] = t
        penalty = self.cfg.restart_penalty if restart else 0.0
        self.run_from[j] = t + penalty
        self.run_len[j] = length
        self.version[j] += 1
        self.placements[j] = tuple(placements)
        gpu = 0
        for p, n in zip(placements, nodes, strict=True):
            self.cpu_free[n] -= self.job_cpu[j]
            self.mem_free[n] -= self.job_memory[j]
            for g in p.gpus:
                self.gpu_free[n, g] -= p.gpu_milli
            gpu += len(p.gpus) * p.gpu_milli
            self._frag_dirty.add(n)
        k = len(placements)
        req = self.req[j]
        req[0], req[1], req[2] = gpu, self.job_cpu[j] * k, self.job_memory[j] * k
        self.frac[j] = self.usage.fraction(np.array([j]), t)[0]
        self.alloc_total += req
        self.used_total += req * self.frac[j]
        if self.status[j] == WAITING:
            self.waiting -= 1
            self.running += 1
        self.status[j] = RUNNING
        self._rows = None
        self._frag = None
        finish = t + penalty + (1.0 - self.work[j]) * length
        self._push(finish, COMPLETION, j * (1 << 20) + int(self.version[j] % (1 << 20)))

    def _stop(self, j: int, t: float) -> None:
        """Stop the current run of job ``j`` at ``t`` (it waits again): bank its progress, free its resources."""
        length = self.run_len[j]
        ran = max(0.0, t - self.run_from[j])
        if self.cfg.keep_progress:
            done = 1.0 if length <= 0 else ran / length
            self.work[j] = min(1.0, self.work[j] + done)
        else:
            self.work[j] = 0.0
        self._release(j)
        self.version[j] += 1
        self.status[j] = WAITING
        self.running -= 1
        self.waiting += 1

    def _release(self, j: int) -> None:
        for p in self.placements.pop(j, ()):
            n = self.node_index[p.node]
            self.cpu_free[n] += self.job_cpu[j]
            self.mem_free[n] += self.job_memory[j]
            for g in p.gpus:
                self.gpu_free[n, g] += p.gpu_milli
            self._frag_dirty.add(n)
        self.alloc_total -= self.req[j]
        self.used_total -= self.req[j] * self.frac[j]
        self.req[j] = 0.0
        self._rows = None
        self._frag = None

    # Observations and samples -------------------------------------------------------------
    def _running_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per running placement: job index, a (nodes, rows) 0/1 matrix, and requested (gpu milli, cpu,
        memory); rebuilt only when the allocation changed."""
        if self._rows is None:
            jobs: list[int] = []
            nodes: list[int] = []
            gpu: list[float] = []
            for j, ps in self.placements.items():
                for p in ps:
                    jobs.append(j)
                    nodes.append(self.node_index[p.node])
                    gpu.append(len(p.gpus) * p.gpu_milli)
            jj = np.array(jobs, dtype=np.int64)
            req = np.zeros((len(jobs), 3))
            if len(jobs):
                req[:, 0] = gpu
                req[:, 1] = self.job_cpu[jj]
                req[:, 2] = self.job_memory[jj]
            onehot = np.zeros((len(self.scenario.nodes), len(jobs)))
            onehot[nodes, np.arange(len(jobs))] = 1.0
            self._rows = (jj, onehot, req)
        return self._rows

    def _refresh_usage(self, t: float) -> None:
        """Re-evaluate the used fraction of every running job at ``t`` (at ticks: the monitoring resolution;
        in between, a job keeps the fraction of its last tick or of its start)."""
        running = np.fromiter(self.placements, dtype=np.int64, count=len(self.placements))
        if len(running):
            self.frac[running] = self.usage.fraction(running, t)
            self.used_total = (self.req[running] * self.frac[running]).sum(axis=0)
            self.alloc_total = self.req[running].sum(axis=0)
        else:
            self.used_total = np.zeros(3)
            self.alloc_total = np.zeros(3)

    def _observe(self, t: float) -> Observation:
        jobs, onehot, req = self._running_rows()
        used = onehot @ (req * self.frac[jobs]) if len(jobs) else np.zeros((len(self.scenario.nodes), 3))
        nodes = self.scenario.nodes
        readings = {
            nodes[k].name: NodeUsage(
                gpu_milli=float(used[k, 0]), cpu=float(used[k, 1]), memory=float(used[k, 2]), gpus=nodes[k].gpus
            )
            for k in np.flatnonzero(self.up).tolist()
        }
        return Observation(t, readings)

    def _sample(self, t: float) -> None:
        if self._cap is None:
            cap = self.capacity[self.up]
            self._cap = (float(cap[:, 2].sum()), float(cap[:, 0].sum()), float(cap[:, 1].sum()))
        if self._frag is None:
            self._frag = 0.0
            up = self.up
            if self.fragmentation is not None and up.any():
                # Per node, recomputed only where the free state changed since the last sample.
                if self._node_frag is None:
                    self._node_frag = self.fragmentation(self.gpu_free, self.cpu_free, self.node_model)
                elif self._frag_dirty:
                    dirty = np.fromiter(self._frag_dirty, dtype=np.int64, count=len(self._frag_dirty))
                    self._node_frag[dirty] = self.fragmentation(
                        self.gpu_free[dirty], self.cpu_free[dirty], self.node_model[dirty]
                    )
                self._frag = float(self._node_frag[up].sum())
            self._frag_dirty.clear()
        alloc, use = self.alloc_total, self.used_total
        sample = (
            t,
            *self._cap,
            float(alloc[0]),
            float(alloc[1]),
            float(alloc[2]),
            float(use[0]),
            float(use[1]),
            float(use[2]),
            float(self.waiting),
            float(self.running),
            self._frag,
        )
        if self.samples and self.samples[-1][0] == t:
            self.samples[-1] = sample
        else:
            self.samples.append(sample)

    # Checks ---------------------------------------------------------------------------------
    def _check(self, plan: Plan) -> None:
        """Verify the allocation the controller now runs, and that the books agree with it."""
        if self.direct is not None:
            found = self.direct.check(self.up)
            if found:
                raise SolverError(f"{self.policy.name}: the direct engine's allocation is invalid: {found[:3]}")
            if set(self.direct.running) != set(self.placements) or self.direct.queued != self.waiting:
                raise SolverError(f"{self.policy.name}: simulator and direct engine disagree at t={plan.time}")
            return
        st = self.state
        waiting = tuple(Unplaced(name, "insufficient capacity") for name in st.queue)
        problem = st.problem()
        violations = verify(problem, st.allocation.replace(unplaced=waiting))
        if violations:
            shown = "; ".join(str(v) for v in violations[:3])
            raise SolverError(f"{self.policy.name}: the committed allocation at t={plan.time} is invalid: {shown}")
        mine = {self.scenario.jobs[j].name for j in self.placements}
        if mine != set(st.running):
            raise SolverError(
                f"{self.policy.name}: simulator and controller disagree on what runs at t={plan.time}: "
                f"{sorted(mine ^ set(st.running))[:5]}"
            )
        if (self.cpu_free < 0).any() or (self.mem_free < 0).any() or (self.gpu_free[self.present] < 0).any():
            raise SolverError(f"{self.policy.name}: a node is over capacity at t={plan.time}")
        if self.waiting != len(st.queue):
            raise SolverError(
                f"{self.policy.name}: {self.waiting} jobs wait in the simulator, {len(st.queue)} in the controller"
            )

    def _events(self) -> int:
        return sum(self.counts.values())

    def _report(self, t: float) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self._last_report >= 0.1:
            self._last_report = now
            self.progress(Progress(self.policy.name, self.done, len(self.scenario.jobs), self._events(), t))

    # Result ---------------------------------------------------------------------------------
    def result(self, wall: float) -> SimResult:
        sc = self.scenario
        end = self.now if self.cfg.until is None else max(self.now, float(self.cfg.until))
        data = np.array(self.samples, dtype=np.float64).reshape(-1, 13)
        timeline = Timeline(
            data[:, 0],
            data[:, 1:4],
            data[:, 4:7],
            data[:, 7:10],
            data[:, 10],
            data[:, 11],
            data[:, 12],
            end,
        )
        jobs = JobTable(
            tuple(j.name for j in sc.jobs),
            sc.problem.job_arrival,
            self.first_start,
            self.finish,
            self.job_gpus,
            self.preemptions,
            self.migrations,
            self.failures_of,
            self.status == REJECTED,
        )
        counters = Counters(
            **self.counts,
            steps=self.steps,
            resolves=self.direct.resolves if self.direct is not None else self.state.resolves,
            fallbacks=self.fallbacks,
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


def _fragmentation_model(scenario: Scenario) -> Any:
    """FGD's measure under the scenario's own job mix (the most frequent classes covering 95% of the jobs)."""
    from optalloc.heuristics import FragmentationModel, typical_workload

    problem = scenario.problem
    if not problem.nodes or not problem.max_gpus:
        return None
    workload = typical_workload(scenario.jobs, problem.model_names)
    return FragmentationModel.of(workload, len(problem.model_names))


def names(results: Iterable[SimResult]) -> list[str]:
    """The policy names of ``results``, in order."""
    return [r.policy for r in results]
