"""What requests read: the published :class:`View` of a plan (immutable, replaced whole after each
step), the records of nodes and jobs, the plan's JSON, and pushed observations read into the loop's
vocabulary. :class:`~optalloc.service.runtime.Cluster` builds a view after each step; requests read it
without locks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from optalloc.adaptive import ControllerState, JobUsage, NodeUsage, Observation, Plan
from optalloc.core import Allocation, Job, Node, Placement, Status, Unplaced

__all__ = [
    "JobRecord",
    "NodeRecord",
    "NodeUse",
    "View",
    "allocation_doc",
    "build_view",
    "fallback_reason",
    "finite",
    "nodes_digest",
    "observation_from",
    "plan_info",
]


@dataclass(frozen=True)
class NodeRecord:
    node: Node
    drained: bool


@dataclass(frozen=True)
class JobRecord:
    job: Job
    submitted: float


@dataclass(frozen=True)
class NodeUse:
    """What the plan puts on one node: per GPU, job -> milli-GPU; CPU and memory requested; the jobs."""

    gpus: tuple[Mapping[str, int], ...]
    cpu: int
    memory: int
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class View:
    """The published state: what requests read (immutable; replaced whole after each step)."""

    version: int
    time: float | None
    info: Mapping[str, Any]
    allocation: Allocation
    allocation_dict: Mapping[str, Any]
    by_job: Mapping[str, tuple[Placement, ...]]
    unplaced: Mapping[str, Unplaced]
    node_use: Mapping[str, NodeUse]
    queue: tuple[str, ...]
    queued: frozenset[str]
    actions: tuple[dict[str, Any], ...]
    drift: float | None
    stale: bool
    monitor_error: str
    ratios: Mapping[str, float]
    steps: int = 0
    last_step: float | None = None

    @classmethod
    def empty(cls) -> View:
        return cls(
            version=0,
            time=None,
            info=MappingProxyType(plan_info(None, 0.0)),
            allocation=Allocation(status=Status.FEASIBLE),
            allocation_dict=MappingProxyType({"summary": {}, "placements": [], "unplaced": []}),
            by_job=MappingProxyType({}),
            unplaced=MappingProxyType({}),
            node_use=MappingProxyType({}),
            queue=(),
            queued=frozenset(),
            actions=(),
            drift=None,
            stale=False,
            monitor_error="",
            ratios=MappingProxyType({"gpu": 0.0, "cpu": 0.0, "memory": 0.0}),
        )


def fallback_reason(stored: Any) -> str | None:
    """Why the fallback heuristic answered (``no-answer``, ``infeasible``, ``unavailable``), or None.

    A plan stored by a version before the reasons were recorded holds ``true``/``false``: ``true``
    reads as ``unrecorded``."""
    if stored is None or stored is False:
        return None
    return "unrecorded" if stored is True else str(stored)


def plan_info(plan: Plan | None, budget: float) -> dict[str, Any]:
    if plan is None:
        return {
            "trigger": None,
            "trigger_detail": None,
            "method": "",
            "fallback": None,
            "solve_time": 0.0,
            "budget": budget,
            "gap": None,
            "stale": False,
            "error": "",
            "actions": [],
        }
    return {
        "trigger": None if plan.trigger is None else plan.trigger.kind,
        "trigger_detail": None if plan.trigger is None else plan.trigger.detail,
        "method": plan.method,
        "fallback": None if plan.fallback is None else plan.fallback.value,
        "solve_time": plan.solve_time,
        "budget": budget,
        "gap": None if plan.gap is None or not math.isfinite(plan.gap) else plan.gap,
        "stale": plan.stale,
        "error": plan.error,
        "actions": [a.to_dict() for a in plan.actions],
    }


def build_view(
    version: int, when: float | None, info: dict[str, Any], allocation: Allocation, state: ControllerState
) -> View:
    """Plan ``version`` of ``allocation`` on the cluster ``state`` describes, as requests read it."""
    by_job: dict[str, list[Placement]] = {}
    use_gpus: dict[str, list[dict[str, int]]] = {}
    cpu: dict[str, int] = {}
    memory: dict[str, int] = {}
    jobs_on: dict[str, list[str]] = {}
    for n in state.nodes:
        use_gpus[n.name] = [{} for _ in range(n.gpus)]
        cpu[n.name] = memory[n.name] = 0
        jobs_on[n.name] = []
    for p in allocation.placements:
        by_job.setdefault(p.job, []).append(p)
        job = state.jobs.get(p.job)
        if p.node not in use_gpus or job is None:
            continue
        gpus = use_gpus[p.node]
        for g in p.gpus:
            if 0 <= g < len(gpus):
                gpus[g][p.job] = gpus[g].get(p.job, 0) + p.gpu_milli
        cpu[p.node] += job.cpu
        memory[p.node] += job.memory
        if not jobs_on[p.node] or jobs_on[p.node][-1] != p.job:
            jobs_on[p.node].append(p.job)
    node_use = {
        name: NodeUse(
            tuple(MappingProxyType(g) for g in use_gpus[name]),
            cpu[name],
            memory[name],
            tuple(dict.fromkeys(jobs_on[name])),
        )
        for name in use_gpus
    }
    cap = state.capacity.sum(axis=0) if len(state.capacity) else None
    used = state.planned.sum(axis=0) if len(state.planned) else None
    ratios = {"gpu": 0.0, "cpu": 0.0, "memory": 0.0}
    if cap is not None and used is not None:
        for key, col in (("gpu", 0), ("cpu", 2), ("memory", 3)):
            ratios[key] = float(used[col] / cap[col]) if cap[col] > 0 else 0.0
    doc = allocation_doc(allocation)
    doc["summary"].update(
        jobs=len(state.jobs),
        jobs_placed=len(by_job),
        jobs_unplaced=len(state.jobs) - len(by_job),
        nodes=len(state.nodes),
        gpu_allocation_ratio=ratios["gpu"],
        cpu_allocation_ratio=ratios["cpu"],
        memory_allocation_ratio=ratios["memory"],
    )
    return View(
        version=version,
        time=when,
        info=MappingProxyType(info),
        allocation=allocation,
        allocation_dict=MappingProxyType(doc),
        by_job=MappingProxyType({k: tuple(v) for k, v in by_job.items()}),
        unplaced=MappingProxyType({u.job: u for u in allocation.unplaced}),
        node_use=MappingProxyType(node_use),
        queue=state.queue,
        queued=frozenset(state.queue),
        actions=tuple(info.get("actions", ())),
        drift=finite(state.drift.cluster),
        stale=state.stale,
        monitor_error=state.error,
        ratios=MappingProxyType(ratios),
        steps=state.steps,
        last_step=when,
    )


def allocation_doc(allocation: Allocation) -> dict[str, Any]:
    """The allocation file's JSON of ``allocation`` (what ``allocation_to_dict`` gives, built in one pass)."""
    gap = allocation.gap
    summary: dict[str, Any] = {
        "method": allocation.method,
        "status": allocation.status.value,
        "objective": finite(allocation.objective),
        "bound": finite(allocation.bound),
        "gap": finite(gap),
        "wall_time": float(allocation.wall_time),
    }
    placements = [
        {"job": p.job, "replica": p.replica, "node": p.node, "gpus": list(p.gpus), "gpu_milli": p.gpu_milli}
        for p in allocation.placements
    ]
    unplaced = [
        {"job": u.job, "reason": str(u.reason), **({"detail": u.detail} if u.detail else {})}
        for u in allocation.unplaced
    ]
    return {"summary": summary, "placements": placements, "unplaced": unplaced}


def nodes_digest(nodes: tuple[Node, ...]) -> str:
    """A fingerprint of the nodes a plan was made for (names and shapes)."""
    text = repr(sorted((n.name, n.shape) for n in nodes))
    return hashlib.blake2s(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def observation_from(data: Mapping[str, Any], now: float) -> Observation:
    """An :class:`Observation` from the pushed JSON (``time`` defaults to ``now``)."""
    when = data.get("time")
    when = now if when is None else float(when)

    def usage(cls: Any, raw: Mapping[str, Any]) -> Any:
        return cls(**{k: raw.get(k) for k in ("gpu_milli", "gpu_memory", "cpu", "memory")}, gpus=raw.get("gpus", 0))

    nodes = {name: usage(NodeUsage, raw) for name, raw in data.get("nodes", {}).items()}
    jobs = {name: usage(JobUsage, raw) for name, raw in data.get("jobs", {}).items()}
    return Observation(when, nodes, jobs)
