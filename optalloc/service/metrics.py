"""The service's Prometheus metrics, on the registry of the loop's own
:class:`~optalloc.adaptive.exporter.ControllerMetrics` (never the global registry).

The loop's metrics (``optalloc_steps_total``, ``optalloc_resolves_total{trigger}``,
``optalloc_fallbacks_total``, ``optalloc_solve_seconds``, ``optalloc_solve_gap``,
``optalloc_drift_ratio``, ``optalloc_queue_length``, ``optalloc_running_jobs``,
``optalloc_gpu_allocation_ratio``, ``optalloc_monitor_stale``, ...) plus the service's own, prefixed
``optalloc_service_``: requests by route and status with their latency, CPU and memory allocation
ratios, the step time, events per step, re-solves over their budget, store write time, plans refused,
internal errors, loop errors, restarts of the loop's worker process, nodes and jobs known.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from optalloc.adaptive.exporter import ControllerMetrics

if TYPE_CHECKING:
    from optalloc.adaptive import Plan
    from optalloc.service.engine import StepFigures

# Slack of the budget check: the step's own bookkeeping around the solve, and scheduling noise.
BUDGET_SLACK = 0.1


class ServiceMetrics(ControllerMetrics):
    """Everything ``/metrics`` serves."""

    def __init__(self) -> None:
        super().__init__(per_node=False)
        from prometheus_client import Counter, Gauge, Histogram

        r = self.registry
        self.requests = Counter(
            "optalloc_service_requests", "HTTP requests answered, by route and status.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "optalloc_service_request_seconds",
            "Time to answer a request, by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0),
            registry=r,
        )
        self.cpu_ratio = Gauge(
            "optalloc_service_cpu_allocation_ratio", "Allocated CPU over the cluster's CPU.", registry=r
        )
        self.memory_ratio = Gauge(
            "optalloc_service_memory_allocation_ratio", "Allocated memory over the cluster's memory.", registry=r
        )
        self.step_seconds = Histogram(
            "optalloc_service_step_seconds",
            "Wall time of one step of the loop (events, observation, solve).",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.events = Counter("optalloc_service_events", "Events handed to the loop.", registry=r)
        self.over_budget = Counter(
            "optalloc_service_solves_over_budget",
            f"Solves that took longer than their budget (+{BUDGET_SLACK}s).",
            registry=r,
        )
        self.budget = Gauge("optalloc_service_solve_budget_seconds", "Budget of one re-solve.", registry=r)
        self.last_solve = Gauge("optalloc_service_last_solve_seconds", "Wall time of the last solve.", registry=r)
        self.max_solve = Gauge(
            "optalloc_service_solve_seconds_max", "Longest solve since the service started.", registry=r
        )
        self.store_seconds = Histogram(
            "optalloc_service_store_write_seconds",
            "Time to commit one accepted change to SQLite.",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.invalid_plans = Counter(
            "optalloc_service_invalid_plans", "Plans the service refused to publish (verify failed).", registry=r
        )
        self.internal_errors = Counter(
            "optalloc_service_internal_errors", "Requests answered 500 (logged with an id).", registry=r
        )
        self.loop_errors = Counter("optalloc_service_loop_errors", "Steps of the loop that failed.", registry=r)
        self.worker_restarts = Counter(
            "optalloc_service_loop_worker_restarts",
            "Times the loop's worker process was lost (died or hung) and started again.",
            registry=r,
        )
        self.plan_version = Gauge("optalloc_service_plan_version", "Version of the published plan.", registry=r)
        self.nodes = Gauge("optalloc_service_nodes", "Nodes known (drained included).", registry=r)
        self.jobs = Gauge("optalloc_service_jobs", "Jobs known (running and waiting).", registry=r)
        self._max_solve = 0.0

    def record_step(self, figures: StepFigures, plan: Plan, took: float, events: int, budget: float) -> None:
        """Every metric of one step, from the engine's figures and plan (the state stays with the engine)."""
        self.steps.inc()
        if plan.trigger is not None and plan.method:
            self.resolves.labels(plan.trigger.kind).inc()
            self.solve_seconds.observe(plan.solve_time)
            self.gap.set(math.nan if plan.gap is None else plan.gap)
            if plan.fallback is not None:
                self.fallbacks.labels(plan.fallback.value).inc()
            self.last_solve.set(plan.solve_time)
            self._max_solve = max(self._max_solve, plan.solve_time)
            self.max_solve.set(self._max_solve)
            if plan.solve_time > budget + BUDGET_SLACK:
                self.over_budget.inc()
        for action in plan.actions:
            self.actions.labels(action.kind.value).inc()
        self.drift.set(figures.drift)
        self.queue.set(len(figures.queue))
        self.running.set(figures.running)
        self.allocation.set(figures.gpu_ratio)
        self.stale.set(1.0 if figures.stale else 0.0)
        self.step_seconds.observe(took)
        self.events.inc(events)
        self.budget.set(budget)
        self.cpu_ratio.set(figures.cpu_ratio)
        self.memory_ratio.set(figures.memory_ratio)
