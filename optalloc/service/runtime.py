"""The stateful cluster: accepted changes, the adaptive loop that turns them into plans, and the view.

Requests change the cluster through :class:`Cluster` (submit, cancel, register, drain, ...): each
change is written to the :class:`~optalloc.service.store.Store` first, then handed to the loop as an
:class:`~optalloc.adaptive.Event`, and the request is answered; it never waits for a solve. The loop
runs in one thread: it wakes on events (after ``batch_window``, so that a burst is one step) or every
``tick`` seconds, observes (Prometheus, or the last pushed observation), and calls the adaptive loop's
pure step ``optalloc.adaptive.step(state, now, observation, events)`` with the real time. A plan that
changes the allocation is verified, written to the store, and published as an immutable
:class:`View` that requests read without locks.

After a restart the cluster is rebuilt from the store: the nodes, the jobs, and the last published plan
as what runs now, so the service comes back with the same plan (and does not re-solve it at once).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from optalloc.adaptive import (
    ControllerState,
    Event,
    MetricsSource,
    Observation,
    Plan,
    safe_observe,
    step,
)
from optalloc.core import Allocation, Job, Node, Problem, ProblemError, Status, verify
from optalloc.io import allocation_from_dict
from optalloc.service.config import Settings
from optalloc.service.errors import ApiError
from optalloc.service.store import Decision, Store, StoredPlan
from optalloc.service.view import (
    JobRecord,
    NodeRecord,
    NodeUse,
    View,
    build_view,
    fallback_reason,
    finite,
    nodes_digest,
    observation_from,
    plan_info,
)

log = logging.getLogger(__name__)


class Cluster:
    """The stateful cluster of one service (see the module's docstring).

    ``source``: a monitor (e.g. :class:`~optalloc.adaptive.PrometheusSource`) polled every
    ``settings.observe_interval`` seconds; None: observations are pushed with :meth:`observe`.
    ``clock``: the wall clock (seconds since the epoch) of every decision.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        metrics: Any = None,
        source: MetricsSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.config = settings.controller
        self.metrics = metrics
        self.source = source
        self.clock = clock
        self._lock = threading.Lock()  # guards nodes, jobs, the event list and the pushed observation
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.nodes: dict[str, NodeRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self._events: list[Event] = []
        self._pushed: Observation | None = None
        self._pushed_used: float | None = None
        self._last_poll = -math.inf
        self._last_drift_time: float | None = None
        self.state: ControllerState | None = None
        self.view = View.empty()
        self.error: str = ""
        self.ready = False

    # Restore ------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Rebuild the cluster from the store (nodes, jobs, the last published plan)."""
        from optalloc.io import job_from_dict, node_from_dict

        now = self.clock()
        for row in self.store.nodes():
            self.nodes[row.name] = NodeRecord(node_from_dict(row.spec, f"nodes[{row.name}]"), row.drained)
        for row in self.store.jobs():
            self.jobs[row.name] = JobRecord(job_from_dict(row.spec, f"jobs[{row.name}]"), row.submitted)
        stored = self.store.last_plan()
        active = tuple(r.node for r in self.nodes.values() if not r.drained)
        jobs = tuple(r.job for r in self.jobs.values())
        current: Allocation | None = None
        if stored is not None:
            current = self._restored_allocation(stored, active, jobs)
        problem = Problem(active, jobs, current=current, weights=self.config.weights)
        started = {name: stored.time for name in (current.placed_jobs if current else ())} if stored else None
        state = ControllerState.initial(problem, self.config, now=now, started=started)
        if stored is not None:
            # The plan was solved before the restart: no "initial" re-solve, events and drift decide as before.
            # Admit at once only if something changed after that plan was written (jobs or nodes it never saw).
            seen = {p["job"] for p in stored.allocation.get("placements", ())}
            seen |= {u["job"] for u in stored.allocation.get("unplaced", ())}
            dirty = seen != set(self.jobs) or stored.info.get("nodes_digest") != nodes_digest(active)
            state = replace(state, drift=state.drift.replace(last_resolve=now), dirty=dirty)
            allocation = allocation_from_dict(stored.allocation)
            kept = current.placed_jobs if current is not None else frozenset()
            allocation = allocation.replace(
                placements=tuple(p for p in allocation.placements if p.job in kept),
                unplaced=tuple(u for u in allocation.unplaced if u.job in self.jobs and u.job not in kept),
            )
            self.view = build_view(stored.version, stored.time, dict(stored.info), allocation, state)
        else:
            self.view = build_view(0, None, plan_info(None, self.config.budget), state.allocation, state)
        self.state = state
        log.info(
            "restored %d nodes (%d drained), %d jobs, plan version %d",
            len(self.nodes),
            sum(r.drained for r in self.nodes.values()),
            len(self.jobs),
            self.view.version,
        )

    def _restored_allocation(self, stored: StoredPlan, nodes: tuple[Node, ...], jobs: tuple[Job, ...]) -> Allocation:
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
        placements = tuple(p for p in allocation.placements if p.job in ok)
        running = Allocation(placements, method="running", status=Status.FEASIBLE)

        def broken() -> list[Any]:
            problem = Problem(
                nodes, tuple(j for j in jobs if j.name in running.placed_jobs), weights=self.config.weights
            )
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

    # Changes (called from request handlers) -------------------------------------------------------
    def submit(self, job: Job, *, arrival_given: bool) -> bool:
        """Accept ``job`` (True), or nothing when an identical job of that name exists (False).
        409 when another job holds the name; the job is in the store before this returns."""
        now = self.clock()
        if not arrival_given:
            job = replace(job, arrival=now)
        with self._lock:
            known = self.jobs.get(job.name)
            if known is not None:
                if _same_job(known.job, job, arrival_given):
                    return False
                raise ApiError(409, f"job {job.name!r} exists with another specification", "name")
            if len(self.jobs) >= self.settings.max_jobs:
                raise ApiError(409, f"the cluster holds {len(self.jobs)} jobs, the limit (--max-jobs)")
            self._write(lambda: self.store.add_job(job.name, job.to_dict(), now=now))
            self.jobs[job.name] = JobRecord(job, now)
            self._events.append(Event.arrival(job))
        self._wake.set()
        return True

    def submit_many(self, jobs: list[tuple[Job, bool]]) -> tuple[int, int]:
        """Accept several jobs in one transaction (all or none); returns (accepted, created)."""
        now = self.clock()
        fresh: list[Job] = []
        seen: set[str] = set()
        with self._lock:
            for i, (job, arrival_given) in enumerate(jobs):
                if not arrival_given:
                    job = replace(job, arrival=now)
                if job.name in seen:
                    raise ApiError(409, f"jobs[{i}].name: {job.name!r} is given twice", f"jobs[{i}].name")
                seen.add(job.name)
                known = self.jobs.get(job.name)
                if known is not None:
                    if _same_job(known.job, job, arrival_given):
                        continue
                    raise ApiError(409, f"job {job.name!r} exists with another specification", f"jobs[{i}].name")
                fresh.append(job)
            if len(self.jobs) + len(fresh) > self.settings.max_jobs:
                raise ApiError(409, f"the cluster would hold more than {self.settings.max_jobs} jobs (--max-jobs)")
            if fresh:
                self._write(lambda: self.store.add_jobs([(j.name, j.to_dict()) for j in fresh], now=now))
            for job in fresh:
                self.jobs[job.name] = JobRecord(job, now)
                self._events.append(Event.arrival(job))
        if fresh:
            self._wake.set()
        return len(jobs), len(fresh)

    def cancel(self, name: str) -> None:
        """Forget job ``name`` (finished or cancelled): it stops running or leaves the queue."""
        with self._lock:
            if name not in self.jobs:
                raise ApiError(404, f"no job named {name!r}", "name")
            self._write(lambda: self.store.delete_job(name))
            del self.jobs[name]
            self._events.append(Event.completion(name))
        self._wake.set()

    def put_node(self, node: Node, *, create_only: bool) -> bool:
        """Register ``node`` (True) or update it; False when it exists as it is. ``create_only``: an
        existing node of that name with another description is a 409 (POST), else it is updated (PUT).
        An update takes the node out and puts it back: its jobs are placed again by the next solve."""
        now = self.clock()
        with self._lock:
            known = self.nodes.get(node.name)
            if known is not None and known.node == node and dict(known.node.labels) == dict(node.labels):
                return False
            if known is not None and create_only:
                raise ApiError(409, f"node {node.name!r} exists with another description (PUT updates it)", "name")
            if known is None and len(self.nodes) >= self.settings.max_nodes:
                raise ApiError(409, f"the cluster holds {len(self.nodes)} nodes, the limit (--max-nodes)")
            drained = known.drained if known is not None else False
            self._write(lambda: self.store.put_node(node.name, node.to_dict(), drained=drained, now=now))
            self.nodes[node.name] = NodeRecord(node, drained)
            if not drained:
                if known is not None:
                    self._events.append(Event.node_lost(node.name))
                self._events.append(Event.node_added(node))
        self._wake.set()
        return known is None

    def set_drained(self, name: str, drained: bool) -> bool:
        """Drain node ``name`` (its jobs wait again, nothing new goes there) or put it back; False when it
        already was so."""
        now = self.clock()
        with self._lock:
            known = self.nodes.get(name)
            if known is None:
                raise ApiError(404, f"no node named {name!r}", "name")
            if known.drained == drained:
                return False
            self._write(lambda: self.store.put_node(name, known.node.to_dict(), drained=drained, now=now))
            self.nodes[name] = NodeRecord(known.node, drained)
            self._events.append(Event.node_lost(name) if drained else Event.node_added(known.node))
        self._wake.set()
        return True

    def remove_node(self, name: str) -> None:
        with self._lock:
            known = self.nodes.get(name)
            if known is None:
                raise ApiError(404, f"no node named {name!r}", "name")
            self._write(lambda: self.store.delete_node(name))
            del self.nodes[name]
            if not known.drained:
                self._events.append(Event.node_lost(name))
        self._wake.set()

    def observe(self, observation: Observation) -> None:
        """Keep a pushed observation: the loop folds it into the drift at its next step."""
        if self.source is not None:
            raise ApiError(409, "this service reads its observations from Prometheus (--prometheus)")
        with self._lock:
            if self._pushed is not None and observation.time <= self._pushed.time:
                raise ApiError(
                    409, f"observation time {observation.time} is not after the last one ({self._pushed.time})", "time"
                )
            self._pushed = observation
        self._wake.set()

    def _write(self, action: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            action()
        except sqlite3.IntegrityError as err:
            raise ApiError(409, f"conflicts with the stored state ({err})") from None
        except sqlite3.Error as err:
            log.error("the store refused a write: %s", err)
            raise ApiError(503, "the state store cannot be written now; nothing was changed") from None
        if self.metrics is not None:
            self.metrics.store_seconds.observe(time.perf_counter() - started)

    @property
    def pending_events(self) -> int:
        with self._lock:
            return len(self._events)

    # The loop -------------------------------------------------------------------------------------
    def start(self) -> None:
        from optalloc.solve import preload

        # The engines' imports (seconds on a busy machine) would count against the first re-solve's budget.
        preload(self.config.method)
        preload(self.config.fallback)
        if self.state is None:
            self.restore()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="optalloc-loop", daemon=True)
        self._thread.start()
        self.ready = True

    def stop(self, timeout: float = 30.0) -> None:
        self.ready = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.settings.tick)
            if self._stop.is_set():
                break
            if woken and self.settings.batch_window > 0:
                self._stop.wait(self.settings.batch_window)  # let a burst of events gather into one step
            self._wake.clear()
            try:
                self.step_once()
            except Exception:  # the loop must outlive any one step: logged, counted, retried next tick
                log.exception("the loop's step failed")
                self.error = "the last step failed (see the log)"
                if self.metrics is not None:
                    self.metrics.loop_errors.inc()

    def step_once(self) -> Plan:
        """One step of the adaptive loop now: take the events, observe, step, publish."""
        assert self.state is not None, "restore() first"
        with self._lock:
            events, self._events = self._events, []
        now = self.clock()
        observation = self._observation(now)
        started = time.perf_counter()
        before = self.state
        state, plan = step(before, now, observation, events)
        took = time.perf_counter() - started
        self.state = state
        self.error = ""
        changed = plan.allocation is not before.allocation and (
            set(plan.allocation.placements) != set(self.view.allocation.placements)
            or set(plan.allocation.unplaced) != set(self.view.allocation.unplaced)
        )
        if changed:
            self._publish(now, plan, state)
        else:
            self.view = replace(
                self.view,
                queue=state.queue,
                queued=frozenset(state.queue),
                drift=finite(state.drift.cluster),
                stale=state.stale,
                monitor_error=state.error,
                steps=state.steps,
                last_step=now,
            )
        if self.metrics is not None:
            self.metrics.record_step(state, plan, took, len(events), self.config.budget)
        return plan

    def _observation(self, now: float) -> Observation | None:
        if self.source is not None:
            if now - self._last_poll < self.settings.observe_interval:
                return None
            self._last_poll = now
            return safe_observe(self.source, now)
        with self._lock:
            pushed = self._pushed
        if pushed is None:
            return None
        if now - pushed.time > self.settings.observation_max_age:
            return Observation.missing(now, f"no observation pushed for {now - pushed.time:.0f}s")
        if self._pushed_used == pushed.time:
            return None  # folded in already
        self._pushed_used = pushed.time
        return pushed

    def _publish(self, now: float, plan: Plan, state: ControllerState) -> None:
        allocation = plan.allocation
        bad = _check(state, allocation)
        if bad:  # the controller verifies what it adopts; this is the service's own check before publishing
            log.error("not publishing an invalid plan: %s", "; ".join(bad[:3]))
            if self.metrics is not None:
                self.metrics.invalid_plans.inc()
            return
        version = self.view.version + 1
        info = plan_info(plan, self.config.budget)
        info["nodes_digest"] = nodes_digest(state.nodes)
        view = build_view(version, now, info, allocation, state)
        decisions = [Decision(now, a.kind.value, a.job, a.reason) for a in plan.actions]
        try:
            self.store.put_plan(StoredPlan(version, now, info, dict(view.allocation_dict)), decisions)
        except sqlite3.Error as err:
            log.error("could not store plan %d: %s", version, err)
        self.view = view

    # Reading --------------------------------------------------------------------------------------
    def job_status(self, name: str) -> dict[str, Any]:
        record = self.jobs.get(name)
        if record is None:
            raise ApiError(404, f"no job named {name!r}", "name")
        return self._status(name, record, self.view)

    def _status(self, name: str, record: JobRecord, view: View) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "job": record.job.to_dict(), "submitted": record.submitted}
        placements = view.by_job.get(name)
        if placements:
            out.update(state="running", placements=[p.to_dict() for p in placements])
        elif name in view.queued:
            out["state"] = "queued"
            unplaced = view.unplaced.get(name)
            if unplaced is not None:
                out.update(reason=str(unplaced.reason), detail=unplaced.detail or None)
            else:
                out.update(reason=self._why_waiting(record.job), detail=None)
        else:
            out.update(state="pending", reason="accepted", detail="the loop has not taken it in yet")
        return out

    def _why_waiting(self, job: Job) -> str:
        """A reason for a waiting job no solve has listed yet: fits no node at all, or waits its turn."""
        for record in self.nodes.values():
            n = record.node
            if record.drained or not job.allows(n):
                continue
            fits = job.cpu <= n.cpu and job.memory <= n.memory and job.gpus <= n.gpus
            if fits and (job.gpu_milli == 0 or n.gpus > 0) and (job.gpu_memory == 0 or job.gpu_memory <= n.gpu_memory):
                return "waiting"
        return "fits no node"

    def job_list(self, state: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        view = self.view
        with self._lock:
            records = list(self.jobs.items())
        out = []
        total = 0
        for name, record in records:
            status = self._status(name, record, view)
            if state is not None and status["state"] != state:
                continue
            if offset <= total < offset + limit:
                out.append(status)
            total += 1
        return out, total

    def node_list(self) -> list[dict[str, Any]]:
        view = self.view
        with self._lock:
            records = list(self.nodes.values())
        return [self._node_out(r, view) for r in records]

    def node_status(self, name: str) -> dict[str, Any]:
        record = self.nodes.get(name)
        if record is None:
            raise ApiError(404, f"no node named {name!r}", "name")
        return self._node_out(record, self.view)

    @staticmethod
    def _node_out(record: NodeRecord, view: View) -> dict[str, Any]:
        use = view.node_use.get(record.node.name) if not record.drained else None
        gpus = []
        for g in range(record.node.gpus):
            held = dict(use.gpus[g]) if use is not None and g < len(use.gpus) else {}
            gpus.append({"index": g, "used_milli": sum(held.values()), "jobs": held})
        return {
            "node": record.node.to_dict(),
            "drained": record.drained,
            "jobs": list(use.jobs) if use is not None else [],
            "gpus": gpus,
            "cpu_used": use.cpu if use is not None else 0,
            "memory_used": use.memory if use is not None else 0,
        }

    def plan_out(self, since: int | None) -> dict[str, Any]:
        view = self.view
        base: Allocation | None = None
        base_version: int | None = None
        if since is not None:
            if since > view.version or since < 0:
                raise ApiError(404, f"no plan version {since} (the current one is {view.version})", "since")
            if since == view.version:
                base, base_version = view.allocation, since
            else:
                stored = self.store.plan(since) if since > 0 else None
                if since == 0:
                    base, base_version = Allocation(), 0
                elif stored is None:
                    raise ApiError(404, f"plan version {since} is no longer kept (--plan-history)", "since")
                else:
                    base, base_version = allocation_from_dict(stored.allocation), since
        elif view.version > 1:
            stored = self.store.plan(view.version - 1)
            if stored is not None:
                base, base_version = allocation_from_dict(stored.allocation), view.version - 1
        if base is None:
            base, base_version = Allocation(), (0 if view.version else None)
        changes = view.allocation.diff(base)
        info = dict(view.info)
        return {
            "version": view.version,
            "time": view.time,
            "trigger": info.get("trigger"),
            "trigger_detail": info.get("trigger_detail"),
            "method": info.get("method", ""),
            "fallback": fallback_reason(info.get("fallback")),
            "solve_time": float(info.get("solve_time", 0.0)),
            "budget": float(info.get("budget", self.config.budget)),
            "gap": info.get("gap"),
            "stale": bool(info.get("stale", False)),
            "error": info.get("error", ""),
            "allocation": dict(view.allocation_dict),
            "actions": list(view.actions),
            "changes": {
                "since": base_version,
                "starts": sorted(changes.starts),
                "stops": sorted(changes.stops),
                "migrations": list(changes.migrations),
                "moved_replicas": changes.moved_replicas,
            },
        }

    def problem(self) -> Problem:
        """The cluster as a problem: active nodes, every job, the plan's placements as ``current``."""
        view = self.view
        with self._lock:
            nodes = tuple(r.node for r in self.nodes.values() if not r.drained)
            jobs = tuple(r.job for r in self.jobs.values())
        names = {j.name for j in jobs}
        placements = tuple(p for p in view.allocation.placements if p.job in names)
        current = Allocation(placements, method="plan", status=Status.FEASIBLE)
        return Problem(nodes, jobs, current=current, weights=self.config.weights)


def _same_job(known: Job, new: Job, arrival_given: bool) -> bool:
    if not arrival_given:
        new = replace(new, arrival=known.arrival)
    return known == new and known.to_dict() == new.to_dict()


def _check(state: ControllerState, allocation: Allocation) -> list[str]:
    """Violations of ``allocation`` against the cluster the state describes (its running jobs)."""
    placed = allocation.placed_jobs
    jobs = tuple(state.jobs[n] for n in state.jobs if n in placed)
    problem = Problem(state.nodes, jobs, weights=state.config.weights)
    running = Allocation(allocation.placements, method=allocation.method, status=Status.FEASIBLE)
    return [str(v) for v in verify(problem, running)]


# JobRecord, NodeRecord, NodeUse, View, fallback_reason and observation_from live in
# optalloc.service.view; they are importable from here too.
__all__ = ["Cluster", "JobRecord", "NodeRecord", "NodeUse", "View", "fallback_reason", "observation_from"]
