"""The stateful cluster: accepted changes, the adaptive loop that turns them into plans, and the view.

Requests change the cluster through :class:`Cluster` (submit, cancel, register, drain, ...): each
change is written to the :class:`~optalloc.service.store.Store` first, then handed to the loop as an
:class:`~optalloc.adaptive.Event`, and the request is answered; it never waits for a solve. The loop's
thread wakes on events (after ``batch_window``, so that a burst is one step) or every ``tick`` seconds,
observes (Prometheus, or the last pushed observation), and hands the events and the observation to the
:class:`~optalloc.service.engine.Engine`, which runs the adaptive loop's pure step
``optalloc.adaptive.step(state, now, observation, events)`` with the real time: in the service's worker
process (:mod:`optalloc.service.worker`, ``settings.loop_in == "process"``, the default), or in the
thread itself (``"thread"``). A plan that changes the allocation comes back verified, with its view
built; the thread writes it to the store and publishes the immutable :class:`View` that requests read
without locks.

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

from optalloc.adaptive import Event, MetricsSource, Observation, safe_observe
from optalloc.core import Allocation, Job, Node, Problem, Status
from optalloc.io import allocation_from_dict
from optalloc.service.config import Settings
from optalloc.service.engine import InThread, Snapshot, StepOutcome, restore_state
from optalloc.service.errors import ApiError
from optalloc.service.store import Decision, Store, StoredPlan
from optalloc.service.view import JobRecord, NodeRecord, NodeUse, View, fallback_reason, finite, observation_from
from optalloc.service.worker import InProcess

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
        self.loop: InThread | InProcess | None = None
        self.restored = False
        self.view = View.empty()
        self.error: str = ""
        self.ready = False

    # Restore ------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Rebuild the cluster from the store (nodes, jobs, the last published plan)."""
        from optalloc.io import job_from_dict, node_from_dict

        for row in self.store.nodes():
            self.nodes[row.name] = NodeRecord(node_from_dict(row.spec, f"nodes[{row.name}]"), row.drained)
        for row in self.store.jobs():
            self.jobs[row.name] = JobRecord(job_from_dict(row.spec, f"jobs[{row.name}]"), row.submitted)
        active = tuple(r.node for r in self.nodes.values() if not r.drained)
        jobs = tuple(r.job for r in self.jobs.values())
        _, self.view = restore_state(Snapshot(active, jobs, self.store.last_plan(), self.clock()), self.config)
        self.restored = True
        log.info(
            "restored %d nodes (%d drained), %d jobs, plan version %d",
            len(self.nodes),
            sum(r.drained for r in self.nodes.values()),
            len(self.jobs),
            self.view.version,
        )

    def snapshot(self) -> Snapshot:
        """What a new engine starts from: the active nodes, every job and the published plan. The events so
        far are in it: they are dropped (a change accepted after this returns is the next step's event)."""
        view = self.view
        with self._lock:
            nodes = tuple(r.node for r in self.nodes.values() if not r.drained)
            jobs = tuple(r.job for r in self.jobs.values())
            self._events = []
        now = self.clock()
        plan = None
        if view.version > 0:
            when = view.time if view.time is not None else now
            plan = StoredPlan(view.version, when, dict(view.info), dict(view.allocation_dict))
        return Snapshot(nodes, jobs, plan, now)

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
        """Start the loop: the engine (``settings.loop_in == "process"``: its worker process, which imports
        and preloads the engines, about a second), then the thread that steps it. A worker that does not
        start is logged, and started again by the thread."""
        if not self.restored:
            self.restore()
        self._stop.clear()
        if self.settings.loop_in == "thread":
            from optalloc.solve import preload

            # The engines' imports (seconds on a busy machine) would count against the first re-solve's budget.
            preload(self.config.method)
            preload(self.config.fallback)
            self.loop = InThread(self.config, self.snapshot)
        else:
            self.loop = InProcess(
                self.config,
                self.snapshot,
                stop=self._stop,
                on_restart=self._worker_lost,
                nice=self.settings.loop_nice,
            )
        if not self.loop.start():
            self.error = "the loop's worker process could not be started (see the log)"
        self._thread = threading.Thread(target=self._run, name="optalloc-loop", daemon=True)
        self._thread.start()
        self.ready = True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop's thread, then its worker process (asked, then terminated: none is left behind)."""
        self.ready = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.loop is not None:
            self.loop.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def worker_pid(self) -> int | None:
        """The loop's worker process (None: the loop runs in a thread, or no worker runs now)."""
        return None if self.loop is None else self.loop.pid

    def _worker_lost(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.worker_restarts.inc()

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

    def step_once(self) -> StepOutcome:
        """One step of the adaptive loop now: take the events, observe, step (in the engine), publish."""
        assert self.loop is not None, "start() first"
        with self._lock:
            events, self._events = self._events, []
        now = self.clock()
        observation = self._observation(now)
        outcome = self.loop.step(now, observation, events)
        if outcome.lost:
            self.error = outcome.lost
            return outcome
        if outcome.error:
            self.error = "the last step failed (see the log)"
            if self.metrics is not None:
                self.metrics.loop_errors.inc()
            return outcome
        self.error = ""
        if outcome.invalid:
            log.error("not publishing an invalid plan: %s", "; ".join(outcome.invalid))
            if self.metrics is not None:
                self.metrics.invalid_plans.inc()
        figures = outcome.figures
        assert figures is not None and outcome.plan is not None
        if outcome.view is not None:
            self._publish(now, outcome)
        else:
            self.view = replace(
                self.view,
                queue=figures.queue,
                queued=frozenset(figures.queue),
                drift=finite(figures.drift),
                stale=figures.stale,
                monitor_error=figures.error,
                steps=figures.steps,
                last_step=now,
            )
        if self.metrics is not None:
            self.metrics.record_step(figures, outcome.plan, outcome.took, len(events), self.config.budget)
        return outcome

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

    def _publish(self, now: float, outcome: StepOutcome) -> None:
        """Write the engine's new (verified) view to the store, then publish it."""
        view = outcome.view
        assert view is not None and outcome.plan is not None and outcome.stored is not None
        decisions = [Decision(now, a.kind.value, a.job, a.reason) for a in outcome.plan.actions]
        try:
            self.store.put_plan_text(view.version, now, *outcome.stored, decisions)
        except sqlite3.Error as err:
            log.error("could not store plan %d: %s", view.version, err)
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


# JobRecord, NodeRecord, NodeUse, View, fallback_reason and observation_from live in
# optalloc.service.view; they are importable from here too.
__all__ = ["Cluster", "JobRecord", "NodeRecord", "NodeUse", "View", "fallback_reason", "observation_from"]
