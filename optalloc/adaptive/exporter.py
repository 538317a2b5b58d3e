"""The controller's own metrics, in the Prometheus exposition format (prometheus-client).

Everything lives on a :class:`ControllerMetrics` object's own ``CollectorRegistry`` (never the global
one), so that several controllers, or tests, can run side by side. Feed it each step's state and plan
with :meth:`ControllerMetrics.record`; serve it with :func:`start_exporter`.

Metrics (all prefixed ``optalloc_``): ``steps_total``, ``resolves_total{trigger}``,
``actions_total{kind}``, ``fallbacks_total{reason}`` (solves where the fallback heuristic stood in for the
method: ``no-answer``, ``infeasible``, ``unavailable``; every reason exported from 0), ``solve_seconds`` (histogram of re-solve wall time),
``solve_gap`` (relative gap of the last solve, NaN when unknown), ``drift_ratio`` (smoothed cluster
drift), ``node_drift_ratio{node}`` (optional), ``queue_length``, ``running_jobs``,
``gpu_allocation_ratio`` (allocated GPU milli over capacity), ``monitor_stale`` (1 while the monitoring
data is stale).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optalloc.adaptive.controller import ControllerState
    from optalloc.adaptive.plan import Plan


class ControllerMetrics:
    """Prometheus metrics of one controller, on their own registry (``self.registry``).

    ``per_node``: also export the smoothed drift of every node (one series per node).
    """

    def __init__(self, *, per_node: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        from optalloc.adaptive.plan import FallbackReason

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.per_node = per_node
        self.steps = Counter("optalloc_steps", "Controller steps taken.", registry=r)
        self.resolves = Counter("optalloc_resolves", "Re-solves, by what triggered them.", ["trigger"], registry=r)
        self.actions = Counter("optalloc_actions", "Plan actions, by kind.", ["kind"], registry=r)
        self.fallbacks = Counter(
            "optalloc_fallbacks",
            "Solves where the fallback heuristic stood in for the method, by why.",
            ["reason"],
            registry=r,
        )
        for reason in FallbackReason:
            self.fallbacks.labels(reason.value)
        self.solve_seconds = Histogram(
            "optalloc_solve_seconds",
            "Wall time of a re-solve, seconds.",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.gap = Gauge("optalloc_solve_gap", "Relative gap of the last solve (NaN when unknown).", registry=r)
        self.drift = Gauge("optalloc_drift_ratio", "Smoothed cluster drift (fraction of capacity).", registry=r)
        self.node_drift = Gauge(
            "optalloc_node_drift_ratio", "Smoothed drift per node (fraction of capacity).", ["node"], registry=r
        )
        self.queue = Gauge("optalloc_queue_length", "Jobs waiting.", registry=r)
        self.running = Gauge("optalloc_running_jobs", "Jobs running.", registry=r)
        self.allocation = Gauge(
            "optalloc_gpu_allocation_ratio", "Allocated GPU milli over the cluster's GPU capacity.", registry=r
        )
        self.stale = Gauge("optalloc_monitor_stale", "1 while the monitoring data is stale.", registry=r)
        self.gap.set(math.nan)
        self.drift.set(math.nan)

    def record(self, state: ControllerState, plan: Plan) -> None:
        """Update every metric from one step's resulting ``state`` and ``plan``."""
        self.steps.inc()
        if plan.trigger is not None and plan.method:
            self.resolves.labels(plan.trigger.kind).inc()
            self.solve_seconds.observe(plan.solve_time)
            self.gap.set(math.nan if plan.gap is None else plan.gap)
            if plan.fallback is not None:
                self.fallbacks.labels(plan.fallback.value).inc()
        for action in plan.actions:
            self.actions.labels(action.kind.value).inc()
        self.drift.set(state.drift.cluster)
        if self.per_node:
            for name, value in zip(state.drift.nodes, state.drift.node, strict=True):
                self.node_drift.labels(name).set(float(value))
        self.queue.set(len(state.queue))
        self.running.set(len(state.running))
        capacity = float(state.capacity[:, 0].sum()) if len(state.capacity) else 0.0
        used = float(state.planned[:, 0].sum()) if len(state.planned) else 0.0
        self.allocation.set(used / capacity if capacity else 0.0)
        self.stale.set(1.0 if state.stale else 0.0)

    def exposition(self) -> bytes:
        """The metrics as Prometheus text (what the exporter serves at /metrics)."""
        from prometheus_client import generate_latest

        data: bytes = generate_latest(self.registry)
        return data


@dataclass
class Exporter:
    """A running metrics endpoint: ``http://{host}:{port}/metrics``. :meth:`close` stops it."""

    metrics: ControllerMetrics
    host: str
    port: int
    server: Any
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_exporter(port: int, host: str = "127.0.0.1", metrics: ControllerMetrics | None = None) -> Exporter:
    """Serve ``metrics`` (a new :class:`ControllerMetrics` by default) on ``host:port`` in a daemon
    thread. ``port=0`` picks a free port (read it from ``exporter.port``). Loopback by default: pass
    ``host="0.0.0.0"`` to let a Prometheus on another machine scrape it."""
    from prometheus_client import start_http_server

    metrics = metrics if metrics is not None else ControllerMetrics()
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return Exporter(metrics, host, int(server.server_port), server, thread)
