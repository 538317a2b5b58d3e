"""Drift: how far observed usage strays from the plan, smoothed, and when that is worth a re-solve.

The plan is what the running allocation requests; the observation is what the jobs really use. For each
node and resource ``r`` (GPU milli, GPU memory MiB, CPU milli-cores, memory MiB) the drift is
``|observed - planned| / capacity``; a node's drift is the largest over the watched resources, the
cluster's is ``sum_n |observed - planned| / sum_n capacity`` over the nodes that reported, largest over
the resources. Both are smoothed with an exponentially weighted moving average whose weight follows
the time between observations: ``s <- s + (1 - exp(-dt / tau)) (x - s)``.

A re-solve is triggered when the smoothed cluster drift goes above ``high`` (or a node's above
``node_high``); the trigger then stays disarmed until the drift falls below ``low`` (``node_low``):
hysteresis, so that a drift that a re-solve cannot remove does not cause a re-solve every step. Event
triggers: queued arrivals since the last re-solve beyond a count or a GPU demand, completions that freed
enough GPU while jobs wait, and a node lost or added. No two re-solves closer than ``min_interval``
seconds, except for node events.

Everything here is pure: frozen states in, frozen states out, the time passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from optalloc.adaptive.monitor import Observation
from optalloc.core import Job, Node, Placement, ProblemError

# Columns of every usage array.
RESOURCES = ("gpu", "gpu_memory", "cpu", "memory")
GPU, GPU_MEMORY, CPU, MEMORY = range(4)


@dataclass(frozen=True)
class DriftConfig:
    """Knobs of drift detection and event triggers.

    ``tau``: EWMA time constant, seconds. ``high``/``low``: cluster drift (fraction of capacity) that
    triggers a re-solve / re-arms the trigger. ``node_high``/``node_low``: the same per node (None: no
    per-node trigger). ``resources``: which of ``gpu``, ``gpu_memory``, ``cpu``, ``memory`` count (GPU
    memory is off by default: jobs seldom state it, so its plan is mostly 0). ``min_interval``: seconds
    between two re-solves. ``arrivals``: queued arrivals since the last re-solve that trigger one, or
    ``arrival_gpu_milli`` of their GPU demand. ``freed_gpu_milli``: GPU milli freed by completions since
    the last re-solve that triggers one while jobs wait. ``node_events``: a node lost or added triggers at
    once.
    """

    tau: float = 60.0
    high: float = 0.25
    low: float = 0.10
    node_high: float | None = 0.5
    node_low: float = 0.25
    resources: tuple[str, ...] = ("gpu", "cpu", "memory")
    min_interval: float = 60.0
    arrivals: int = 8
    arrival_gpu_milli: int = 8000
    freed_gpu_milli: int = 1000
    node_events: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.tau, int | float) and self.tau > 0):
            raise ProblemError("drift.tau", self.tau, "is not a positive number of seconds")
        for name in ("high", "low", "node_low", "min_interval"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0):
                raise ProblemError(f"drift.{name}", value, "is not a non-negative number")
        if self.low > self.high:
            raise ProblemError("drift.low", self.low, f"is above drift.high={self.high}")
        if self.node_high is not None and not (self.node_low <= self.node_high):
            raise ProblemError("drift.node_low", self.node_low, f"is above drift.node_high={self.node_high}")
        for name in ("arrivals", "arrival_gpu_milli", "freed_gpu_milli"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ProblemError(f"drift.{name}", value, "is not a positive integer")
        unknown = [r for r in self.resources if r not in RESOURCES]
        if unknown or not self.resources:
            raise ProblemError("drift.resources", self.resources, f"is not a non-empty subset of {RESOURCES}")
        object.__setattr__(self, "resources", tuple(self.resources))

    @property
    def columns(self) -> np.ndarray:
        return np.array([RESOURCES.index(r) for r in self.resources], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class Trigger:
    """Why the controller re-solves: ``kind`` (``initial``, ``drift``, ``node-drift``, ``arrivals``,
    ``completions``, ``node-lost``, ``node-added``, ``forced``) and a sentence with the figures."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


# Usage arrays ---------------------------------------------------------------------------------


def capacity(nodes: Sequence[Node]) -> np.ndarray:
    """float (n, 4): GPU milli, GPU memory MiB (all GPUs), CPU milli-cores, memory MiB per node."""
    out = np.zeros((len(nodes), 4), dtype=np.float64)
    for i, n in enumerate(nodes):
        out[i] = (n.gpus * 1000, n.gpus * n.gpu_memory, n.cpu, n.memory)
    return out


def planned(
    node_index: Mapping[str, int], jobs: Mapping[str, Job], placements: Sequence[Placement], n: int
) -> np.ndarray:
    """float (n, 4): what the placements request per node (same columns as :func:`capacity`)."""
    out = np.zeros((n, 4), dtype=np.float64)
    if not placements:
        return out
    rows = np.empty(len(placements), dtype=np.int64)
    values = np.empty((len(placements), 4), dtype=np.float64)
    for k, p in enumerate(placements):
        job = jobs[p.job]
        rows[k] = node_index[p.node]
        values[k] = (len(p.gpus) * p.gpu_milli, len(p.gpus) * job.gpu_memory, job.cpu, job.memory)
    np.add.at(out, rows, values)
    return out


def observed(node_index: Mapping[str, int], observation: Observation, n: int) -> np.ndarray:
    """float (n, 4): observed usage per node; NaN where not measured (or the node is unknown)."""
    out = np.full((n, 4), np.nan, dtype=np.float64)
    if not observation.nodes:
        return out
    nan = math.nan
    rows = np.fromiter((node_index.get(name, -1) for name in observation.nodes), dtype=np.int64)
    values = np.array(
        [
            (
                nan if u.gpu_milli is None else u.gpu_milli,
                nan if u.gpu_memory is None else u.gpu_memory,
                nan if u.cpu is None else u.cpu,
                nan if u.memory is None else u.memory,
            )
            for u in observation.nodes.values()
        ],
        dtype=np.float64,
    )
    known = rows >= 0
    out[rows[known]] = np.where(np.isfinite(values[known]), values[known], np.nan)
    return out


@dataclass(frozen=True, eq=False)
class DriftMeasure:
    """One raw (unsmoothed) drift reading: ``node`` (n,) NaN where nothing was observed, ``cluster``
    (NaN when no node reported), and ``by_resource`` (4,) the cluster drift per resource."""

    node: np.ndarray
    cluster: float
    by_resource: np.ndarray


def measure(cap: np.ndarray, plan: np.ndarray, seen: np.ndarray, config: DriftConfig) -> DriftMeasure:
    """Drift of observed ``seen`` against ``plan``, relative to ``cap`` (all (n, 4))."""
    cols = config.columns
    diff = np.abs(seen[:, cols] - plan[:, cols])  # NaN where unobserved
    c = cap[:, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(c > 0, diff / np.where(c > 0, c, 1.0), np.nan)
    node = np.full(len(cap), np.nan)
    has = ~np.isnan(rel).all(axis=1) if len(rel) else np.zeros(0, bool)
    if has.any():
        node[has] = np.nanmax(rel[has], axis=1)
    by_resource = np.full(4, np.nan)
    seen_cap = np.where(np.isnan(diff) | (c <= 0), 0.0, c).sum(axis=0)
    seen_diff = np.where(np.isnan(diff) | (c <= 0), 0.0, diff).sum(axis=0)
    ok = seen_cap > 0
    by_resource[cols[ok]] = seen_diff[ok] / seen_cap[ok]
    cluster = float(np.nanmax(by_resource)) if ok.any() else math.nan
    return DriftMeasure(node, cluster, by_resource)


# State ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DriftState:
    """Smoothed drift and the trigger bookkeeping, per the node order ``nodes``.

    ``node``/``cluster``: smoothed drift (NaN until a first reading). ``armed``/``node_armed``: the
    hysteresis flags. ``time``: time of the last reading folded in. ``last_resolve``: time of the last
    re-solve (None: never). ``arrivals``, ``arrival_gpu_milli``, ``freed_gpu_milli``, ``node_changes``:
    what happened since the last re-solve.
    """

    nodes: tuple[str, ...]
    node: np.ndarray
    cluster: float = math.nan
    armed: bool = True
    node_armed: np.ndarray = field(default_factory=lambda: np.ones(0, dtype=bool))
    time: float | None = None
    last_resolve: float | None = None
    arrivals: int = 0
    arrival_gpu_milli: int = 0
    freed_gpu_milli: int = 0
    node_changes: tuple[Trigger, ...] = ()

    @classmethod
    def initial(cls, nodes: Sequence[str]) -> DriftState:
        n = len(nodes)
        return cls(tuple(nodes), np.full(n, np.nan), node_armed=np.ones(n, dtype=bool))

    def replace(self, **changes: Any) -> DriftState:
        return replace(self, **changes)

    def reindex(self, nodes: Sequence[str]) -> DriftState:
        """The same state over a new node list (kept nodes keep their readings, new ones start empty)."""
        old = {name: i for i, name in enumerate(self.nodes)}
        node = np.full(len(nodes), np.nan)
        armed = np.ones(len(nodes), dtype=bool)
        for i, name in enumerate(nodes):
            j = old.get(name)
            if j is not None:
                node[i], armed[i] = self.node[j], self.node_armed[j]
        return replace(self, nodes=tuple(nodes), node=node, node_armed=armed)

    def worst_node(self) -> tuple[str, float] | None:
        if not len(self.node) or np.isnan(self.node).all():
            return None
        i = int(np.nanargmax(self.node))
        return self.nodes[i], float(self.node[i])


def smooth(state: DriftState, reading: DriftMeasure, time: float, config: DriftConfig) -> DriftState:
    """Fold one reading taken at ``time`` into the EWMA, and re-arm the triggers that fell below low."""
    if state.time is not None and time <= state.time:
        return state  # the same (or an older) sample again: nothing new
    dt = math.inf if state.time is None else time - state.time
    alpha = 1.0 - math.exp(-dt / config.tau)
    node = state.node.copy()
    fresh = ~np.isnan(reading.node)
    first = fresh & np.isnan(node)
    node[first] = reading.node[first]
    again = fresh & ~first
    node[again] += alpha * (reading.node[again] - node[again])
    cluster = state.cluster
    if not math.isnan(reading.cluster):
        cluster = reading.cluster if math.isnan(cluster) else cluster + alpha * (reading.cluster - cluster)
    armed = state.armed or (not math.isnan(cluster) and cluster < config.low)
    node_armed = state.node_armed | (node < config.node_low)  # NaN compares False: stays as it was
    return replace(state, node=node, cluster=cluster, armed=armed, node_armed=node_armed, time=time)


def note_arrival(state: DriftState, job: Job) -> DriftState:
    return replace(
        state, arrivals=state.arrivals + 1, arrival_gpu_milli=state.arrival_gpu_milli + job.gpu_demand * job.replicas
    )


def note_freed(state: DriftState, gpu_milli: int) -> DriftState:
    return replace(state, freed_gpu_milli=state.freed_gpu_milli + int(gpu_milli))


def note_node(state: DriftState, trigger: Trigger) -> DriftState:
    return replace(state, node_changes=(*state.node_changes, trigger))


def decide(state: DriftState, now: float, queued: int, config: DriftConfig) -> Trigger | None:
    """The reason to re-solve at ``now``, or None. ``queued``: jobs waiting."""
    if state.node_changes and config.node_events:
        first = state.node_changes[0]
        more = len(state.node_changes) - 1
        return Trigger(first.kind, first.detail + (f" (and {more} more node events)" if more else ""))
    if state.last_resolve is not None and now - state.last_resolve < config.min_interval:
        return None
    if state.armed and not math.isnan(state.cluster) and state.cluster > config.high:
        return Trigger("drift", f"cluster drift {state.cluster:.3f} > {config.high:g}")
    if config.node_high is not None and len(state.node):
        over = state.node_armed & (np.nan_to_num(state.node, nan=-1.0) > config.node_high)
        if over.any():
            i = int(np.argmax(np.where(over, state.node, -1.0)))
            return Trigger("node-drift", f"node {state.nodes[i]!r} drift {state.node[i]:.3f} > {config.node_high:g}")
    if queued and (state.arrivals >= config.arrivals or state.arrival_gpu_milli >= config.arrival_gpu_milli):
        return Trigger(
            "arrivals", f"{state.arrivals} arrivals ({state.arrival_gpu_milli} milli-GPU) since the last re-solve"
        )
    if queued and state.freed_gpu_milli >= config.freed_gpu_milli:
        return Trigger("completions", f"{state.freed_gpu_milli} milli-GPU freed while {queued} jobs wait")
    return None


def after_resolve(state: DriftState, now: float, config: DriftConfig) -> DriftState:
    """Bookkeeping once a re-solve ran at ``now``: counters cleared, triggers above ``high`` disarmed
    (the re-solve has seen that drift; it fires again only after falling below ``low``)."""
    armed = state.armed and not (not math.isnan(state.cluster) and state.cluster > config.high)
    node_armed = state.node_armed.copy()
    if config.node_high is not None:
        node_armed &= ~(np.nan_to_num(state.node, nan=-1.0) > config.node_high)
    return replace(
        state,
        armed=armed,
        node_armed=node_armed,
        last_resolve=now,
        arrivals=0,
        arrival_gpu_milli=0,
        freed_gpu_milli=0,
        node_changes=(),
    )
