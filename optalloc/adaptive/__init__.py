"""The adaptive loop: monitor observed usage, detect drift from the plan, re-solve on a rolling horizon.

``step(state, now, observations, events) -> (state, plan)`` is the whole loop; drivers (the CLI's
``optalloc watch``, the simulator in :mod:`optalloc.sim`, a future service) own the clock and the world.
This package is the production loop only and never imports the simulator. See docs/adaptive.md.

Modules: :mod:`~optalloc.adaptive.controller` (config, state, step, resolve, commit),
:mod:`~optalloc.adaptive.monitor` (observations, Prometheus, this machine), :mod:`~optalloc.adaptive.drift`,
:mod:`~optalloc.adaptive.plan` (events in, plans out), :mod:`~optalloc.adaptive.rightsize`,
:mod:`~optalloc.adaptive.tiers`, :mod:`~optalloc.adaptive.exporter` (the controller's Prometheus metrics).
"""

from optalloc.adaptive.controller import ControllerConfig, ControllerState, Prepared, Selector, events_between, step
from optalloc.adaptive.drift import DriftConfig, DriftState, Trigger
from optalloc.adaptive.monitor import (
    JobUsage,
    LabelMap,
    LocalSource,
    MetricsSource,
    MonitorError,
    NodeUsage,
    Observation,
    PrometheusSource,
    Queries,
    Query,
    ReplaySource,
    StaticSource,
    safe_observe,
)
from optalloc.adaptive.plan import Action, ActionKind, Event, EventKind, FallbackReason, Plan
from optalloc.adaptive.rightsize import RightSizing
from optalloc.models.horizon import HorizonConfig, HorizonPlan, plan_horizon

__all__ = [
    "Action",
    "ActionKind",
    "ControllerConfig",
    "ControllerState",
    "DriftConfig",
    "DriftState",
    "Event",
    "EventKind",
    "FallbackReason",
    "HorizonConfig",
    "HorizonPlan",
    "JobUsage",
    "LabelMap",
    "LocalSource",
    "MetricsSource",
    "MonitorError",
    "NodeUsage",
    "Observation",
    "Plan",
    "Prepared",
    "PrometheusSource",
    "Queries",
    "Query",
    "ReplaySource",
    "RightSizing",
    "Selector",
    "StaticSource",
    "Trigger",
    "events_between",
    "plan_horizon",
    "safe_observe",
    "step",
]
