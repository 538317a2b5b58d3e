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
    state = ClusterState.empty(problem)
    index = problem.job_index
    known = [p for p in allocation.placements if p.job in index and p.node in problem.node_index]
    for p in known:
        state.apply(p, sign=-1)
    cap = problem.capacity
    used_gpu = int(sum(len(p.gpus) * p.gpu_milli for p in known))
    used_cpu = int(cap[:, CPU].sum() - state.cpu.sum())
    used_mem = int(cap[:, MEMORY].sum() - state.memory.sum())
    gpu_cap = int(cap[:, GPU].sum())
    frag = node_fragmentation(state.gpu, state.cpu, problem.node_model, Workload.of_problem(problem))
    free_gpu = float(state.free_gpu_milli().sum())
    placed = {p.job for p in known}
    requested = int((problem.demand[:, GPU] * problem.job_replicas).sum()) if problem.jobs else 0
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
        cpu_allocation_ratio=float(used_cpu / cap[:, CPU].sum()) if cap[:, CPU].sum() else 0.0,
        memory_allocation_ratio=float(used_mem / cap[:, MEMORY].sum()) if cap[:, MEMORY].sum() else 0.0,
        nodes_used=len({p.node for p in known}),
        nodes=len(problem.nodes),
        fragmentation=float(np.round(frag.sum(), 3)),
        fragmentation_ratio=float(frag.sum() / free_gpu) if free_gpu else 0.0,
    )
