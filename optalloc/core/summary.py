"""Allocation.summary(problem): the figures a user reads first."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optalloc.core.allocation import Allocation
from optalloc.core.fragmentation import Workload, node_fragmentation
from optalloc.core.problem import CPU, GPU, MEMORY, Problem
from optalloc.core.state import ClusterState


@dataclass(frozen=True)
class Summary:
    """How the answer was found and what it achieves.

    ``gap`` is relative, ``(bound - objective) / bound``. ``gpu_allocation_ratio`` is allocated GPU
    milli over the cluster's GPU capacity. ``fragmentation`` is the FGD measure (milli-GPU expected to
    be unusable by the problem's own job mix), ``fragmentation_ratio`` that over the free GPU milli.
    """

    method: str
    status: str
    objective: float | None
    bound: float | None
    gap: float | None
    wall_time: float
    jobs: int
    jobs_placed: int
    jobs_unplaced: int
    unplaced_by_reason: dict[str, int]
    replicas_placed: int
    gpu_milli_requested: int
    gpu_milli_allocated: int
    gpu_milli_capacity: int
    gpu_allocation_ratio: float
    cpu_allocation_ratio: float
    memory_allocation_ratio: float
    nodes_used: int
    nodes: int
    fragmentation: float
    fragmentation_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(problem: Problem, allocation: Allocation) -> Summary:
    """The :class:`Summary` of ``allocation`` (placements naming unknown jobs or nodes are left out)."""
    jobs, nodes = problem.job_index, problem.node_index
    known = [p for p in allocation.placements if p.job in jobs and p.node in nodes]
    job = np.array([jobs[p.job] for p in known], dtype=np.int64)
    node = np.array([nodes[p.node] for p in known], dtype=np.int64)
    n = len(problem.nodes)
    cap = problem.capacity
    demand = problem.demand
    state = ClusterState.empty(problem)  # free GPU slots: 1000 each, -1 where a node has no such GPU
    held = np.array([len(p.gpus) for p in known], dtype=np.int64)
    if held.sum():
        gpu = np.array([g for p in known for g in p.gpus], dtype=np.int64)
        milli = np.repeat(np.array([p.gpu_milli for p in known], dtype=np.int64), held)
        np.subtract.at(state.gpu, (np.repeat(node, held), gpu), milli)
    used_cpu_node = np.bincount(node, weights=demand[job, CPU].astype(np.float64), minlength=n) if n else np.zeros(0)
    free_cpu = cap[:, CPU] - np.rint(used_cpu_node).astype(np.int64)
    used_gpu = int(sum(len(p.gpus) * p.gpu_milli for p in known))
    used_cpu = int(demand[job, CPU].sum()) if len(job) else 0
    used_mem = int(demand[job, MEMORY].sum()) if len(job) else 0
    gpu_cap = int(cap[:, GPU].sum())
    frag = node_fragmentation(state.gpu, free_cpu, problem.node_model, Workload.of_problem(problem))
    free_gpu = float(state.free_gpu_milli().sum())
    placed = {p.job for p in known}
    requested = int((demand[:, GPU] * problem.job_replicas).sum()) if problem.jobs else 0
    cpu_total, mem_total = cap[:, CPU].sum(), cap[:, MEMORY].sum()
    return Summary(
        method=allocation.method,
        status=allocation.status.value,
        objective=allocation.objective,
        bound=allocation.bound,
        gap=allocation.gap,
        wall_time=allocation.wall_time,
        jobs=len(problem.jobs),
        jobs_placed=len(placed),
        jobs_unplaced=len(allocation.unplaced),
        unplaced_by_reason=dict(Counter(str(u.reason) for u in allocation.unplaced)),
        replicas_placed=len(known),
        gpu_milli_requested=requested,
        gpu_milli_allocated=used_gpu,
        gpu_milli_capacity=gpu_cap,
        gpu_allocation_ratio=used_gpu / gpu_cap if gpu_cap else 0.0,
        cpu_allocation_ratio=float(used_cpu / cpu_total) if cpu_total else 0.0,
        memory_allocation_ratio=float(used_mem / mem_total) if mem_total else 0.0,
        nodes_used=len({p.node for p in known}),
        nodes=len(problem.nodes),
        fragmentation=float(np.round(frag.sum(), 3)),
        fragmentation_ratio=float(frag.sum() / free_gpu) if free_gpu else 0.0,
    )
