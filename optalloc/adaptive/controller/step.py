"""The step: ``step(state, now, observations, events) -> (state, plan)``, and what it does before it
solves (apply the events, fold in the observation, decide whether to re-solve).

A step has two halves, public for drivers that decide between them (the reinforcement-learning
environment of :mod:`optalloc.rl`): :func:`prepare` applies the events and the observation and decides
nothing; :func:`act` decides and solves, with the configured method or with a *choice* made in between
(another :class:`ControllerConfig` for this step, or a proposed allocation). ``step`` is ``prepare``
then ``act``; with ``config.selector`` set, it asks the selector for the choice at every step that has
something to decide (:attr:`Prepared.open`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from optalloc.adaptive import drift as drift_mod
from optalloc.adaptive import rightsize
from optalloc.adaptive.controller.commit import commit
from optalloc.adaptive.controller.config import ControllerConfig
from optalloc.adaptive.controller.resolve import admit, resolve
from optalloc.adaptive.controller.state import ControllerState
from optalloc.adaptive.drift import Trigger
from optalloc.adaptive.monitor import Observation
from optalloc.adaptive.plan import Action, ActionKind, Event, EventKind, Plan
from optalloc.core import Allocation, Problem

log = logging.getLogger(__name__)


def step(
    state: ControllerState,
    now: float,
    observations: Observation | None = None,
    events: Iterable[Event] = (),
) -> tuple[ControllerState, Plan]:
    """One step of the loop at time ``now`` (seconds, the caller's clock).

    Every decision uses ``now``; the step reads a monotonic clock only to bound and report the time its
    solves take (``config.budget``).

    An exception of an engine that is not an expected outcome (see
    :mod:`~optalloc.adaptive.controller.resolve`) propagates: it is a bug, not a plan.

    ``observations``: the latest usage (None: no monitoring at this step; a stale observation marks the
    data stale and the controller keeps its plan until fresh data arrives). ``events``: what happened
    since the last step. Returns the next state and the plan of this step (empty when nothing changed).
    With ``config.selector`` set, the selector chooses how to act at every step that has something to
    decide (see :func:`act`).
    """
    prepared = prepare(state, now, observations, events)
    selector = prepared.state.config.selector
    choice = selector.choose(prepared.state, prepared.now) if selector is not None and prepared.open else None
    return act(prepared, choice)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A step half done: ``state`` with the events applied and the observation folded in, at ``now``;
    ``forced``: the actions the events forced (the jobs of a lost node preempted); ``fresh``: a fresh
    observation arrived. Nothing is decided yet: :func:`act` finishes the step."""

    state: ControllerState
    now: float
    forced: tuple[Action, ...] = ()
    fresh: bool = False

    @property
    def open(self) -> bool:
        """Whether this step has something to decide: jobs wait, and something changed that may let one
        start (an event, capacity freed) or a re-solve is due (drift, event triggers)."""
        st = self.state
        if not st.queue:
            return False
        if st.config.admit and st.dirty and _might_fit(st):
            return True
        return _decide(st, self.now, self.fresh) is not None


def prepare(
    state: ControllerState,
    now: float,
    observations: Observation | None = None,
    events: Iterable[Event] = (),
) -> Prepared:
    """The first half of :func:`step`: apply ``events`` and fold in ``observations``; decide nothing."""
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
    return Prepared(st, now, tuple(forced), fresh)


def act(prepared: Prepared, choice: ControllerConfig | Allocation | None = None) -> tuple[ControllerState, Plan]:
    """The second half of :func:`step`: decide whether to re-solve, then re-solve, admit or do nothing.

    ``choice`` (from a selector, or a driver that decides itself): None acts as ``state.config`` says;
    a :class:`ControllerConfig` is used for this step only (its method, fallback, queue order, triggers,
    migrations; the state keeps its own configuration); an :class:`Allocation` is a proposal for what
    runs now -- the running jobs and the waiting jobs it starts -- verified and committed as an
    admission by ``allocation.method`` (an invalid proposal is a :class:`~optalloc.core.SolverError`).
    """
    st, now, forced = prepared.state, prepared.now, list(prepared.forced)
    own = st.config
    if isinstance(choice, Allocation):
        st, plan = _adopt(st, now, choice, forced)
    else:
        if choice is not None:
            if not isinstance(choice, ControllerConfig):
                raise TypeError(f"a step's choice is a ControllerConfig or an Allocation, not {type(choice).__name__}")
            st = replace(st, config=choice)
        trigger = _decide(st, now, prepared.fresh)
        cfg = st.config
        if trigger is not None:
            st, plan = resolve(st, now, trigger, forced)
        elif cfg.admit and st.dirty and st.queue and _might_fit(st):
            st, plan = admit(st, now, forced)
        else:  # the cheap path: nothing to solve
            plan = Plan(now, st.allocation, tuple(forced), stale=st.stale, error=st.error)
            if st.dirty:
                st = replace(st, dirty=False)  # nothing waiting could fit: wait for the next event
    if plan.actions:
        st = replace(st, plan=plan)
    return replace(st, config=own, time=now, steps=st.steps + 1), plan


def _adopt(st: ControllerState, now: float, proposal: Allocation, forced: list[Action]) -> tuple[ControllerState, Plan]:
    """Commit a proposed allocation of the whole queue's window (verified by :func:`commit`)."""
    method = proposal.method or "proposal"
    trigger = Trigger("admit", f"{len(st.queue)} jobs waiting; allocation proposed by {method}")
    problem = st.problem()
    st2, changes = commit(st, now, proposal, problem, trigger, method, None)
    # The proposal decided what runs at this step: the event counters start again, as after a re-solve.
    st2 = replace(st2, drift=drift_mod.after_resolve(st2.drift, now, st2.config.drift))
    plan = Plan(
        now,
        st2.allocation,
        tuple(forced) + tuple(changes),
        trigger,
        method=method,
        stale=st.stale,
        error=st.error,
    )
    return replace(st2, dirty=False), plan


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
