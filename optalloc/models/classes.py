"""Compression: identical nodes grouped into types, identical jobs into classes.

A *node type* is a set of nodes with the same shape (GPU model, GPU count and memory, labels) and the
same free capacity after what is fixed on them (free CPU, memory, fully free GPUs, and the free
levels of the GPUs already partly shared). A *job class* is a set of jobs with the same demand key
(per-replica demand, replicas, rules, priority); movable running jobs also carry their origin type.
The integer programs count replicas per (class, type) instead of deciding per (job, node).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optalloc.core import MILLI, Allocation, ClusterState, PlacementRule, Problem


@dataclass(frozen=True)
class NodeType:
    """``count`` interchangeable nodes (indices ``nodes``) with identical free capacity each."""

    nodes: tuple[int, ...]
    cpu: int  # free milli-cores per node
    memory: int  # free MiB per node
    full_gpus: int  # fully free GPUs per node
    partial: tuple[tuple[int, int], ...]  # (free milli, free GPU memory MiB) of each partly used GPU
    gpu_memory: int  # MiB per GPU of this node shape (0 = unknown)
    model: int  # index into problem.model_names, -1 for none
    representative: int  # a node index of the type (for eligibility checks)

    @property
    def count(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class JobClass:
    """Interchangeable jobs (indices ``jobs``), all with the same per-replica demand and rules."""

    jobs: tuple[int, ...]
    cpu: int
    memory: int
    gpus: int  # whole GPUs per replica
    share: int  # milli of one GPU per replica (0 unless sharing)
    gpu_memory: int
    replicas: int
    min_replicas: int
    placement: PlacementRule
    value: int  # objective value of one replica
    origin: tuple[tuple[int, int], ...]  # movable running jobs: (node type, replicas per job running there now)
    running: bool  # the class's jobs run now and may move (allow_migration)
    pool: int = -1  # classes with the same pool share their jobs (an elastic single-node job, one class per size)

    @property
    def count(self) -> int:
        return len(self.jobs)

    @property
    def elastic(self) -> bool:
        return self.min_replicas < self.replicas


@dataclass(frozen=True)
class Compression:
    """The problem seen by the integer programs: node types, job classes, eligibility."""

    problem: Problem
    types: tuple[NodeType, ...]
    classes: tuple[JobClass, ...]
    eligible: np.ndarray  # bool (classes, types): one replica fits an (empty-of-new-work) node of the type
    fixed: Allocation  # placements kept as they are (running jobs that may not move)
    unhostable: tuple[int, ...]  # jobs no node could host even when empty
    node_type: np.ndarray  # int (n,): type index of each node
    exact: bool  # one type per node and one class per multi-replica job: the program is exact

    def describe(self) -> dict[str, Any]:
        return {
            "nodes": len(self.problem.nodes),
            "node_types": len(self.types),
            "jobs": len(self.problem.jobs),
            "job_classes": len(self.classes),
            "eligible_pairs": int(self.eligible.sum()),
            "fixed_replicas": len(self.fixed.placements),
        }


def compress(problem: Problem, *, allow_migration: bool = False, group_nodes: bool = True) -> Compression:
    """Group ``problem``'s nodes into types and its jobs into classes.

    Running jobs stay fixed where they run unless ``allow_migration`` (then preemptible ones become
    movable classes remembering their origin type). ``group_nodes=False`` keeps one type per node,
    which makes the formulation exact per node (for small problems and cross-checks).
    """
    current = problem.current
    movable: set[str] = set()
    if current is not None and allow_migration:
        movable = {p.job for p in current.placements if problem.jobs[problem.job_index[p.job]].preemptible}
    fixed = Allocation(
        tuple(p for p in current.placements if p.job not in movable) if current is not None else (),
        method="fixed",
        status="feasible",
    )
    state = ClusterState.of(problem, fixed)
    types, node_type = _node_types(problem, state, group_nodes)
    running = fixed.placed_jobs
    origin_of = _origins(problem, current, movable, node_type)
    unhostable: list[int] = []
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    hostable: dict[tuple[Any, ...], bool] = {}  # per demand key: jobs with equal keys fit the same nodes
    for j, job in enumerate(problem.jobs):
        if job.name in running:
            continue
        key = job.demand_key
        if key not in hostable:
            hostable[key] = problem.hostable(j)
        if job.name not in movable and not hostable[key]:
            unhostable.append(j)
            continue
        # Exact mode keeps each multi-replica job apart, so that the nodes it spans can be counted.
        alone = j if (not group_nodes and job.replicas > 1) else -1
        groups[(key, origin_of.get(job.name, ()), job.name in movable, alone)].append(j)
    classes: list[JobClass] = []
    for pool, ((_, origin, running, _), members) in enumerate(groups.items()):
        base = _job_class(problem, members, origin, running)
        if base.placement is PlacementRule.SINGLE_NODE and base.elastic:
            # An elastic job on one node: one class per size, min..max replicas, drawing on the same jobs.
            classes.extend(
                replace(base, replicas=size, min_replicas=size, pool=pool)
                for size in range(base.min_replicas, base.replicas + 1)
            )
        else:
            classes.append(base)
    eligible = _eligibility(problem, types, tuple(classes))
    return Compression(problem, types, tuple(classes), eligible, fixed, tuple(unhostable), node_type, not group_nodes)


def _node_types(problem: Problem, state: ClusterState, group: bool) -> tuple[tuple[NodeType, ...], np.ndarray]:
    keys: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for n, node in enumerate(problem.nodes):
        gpu = state.gpu[n, : node.gpus]
        mem = state.gpu_mem[n, : node.gpus]
        full = int((gpu == MILLI).sum())
        partial = tuple(sorted((int(f), int(m)) for f, m in zip(gpu, mem, strict=True) if 0 < f < MILLI))
        key = (
            int(state.cpu[n]),
            int(state.memory[n]),
            full,
            partial,
            node.gpu_memory,
            int(problem.node_model[n]),
            tuple(sorted(node.labels.items())),
            n if not group else -1,
        )
        keys[key].append(n)
    types = []
    node_type = np.zeros(len(problem.nodes), dtype=np.int64)
    for t, (key, members) in enumerate(keys.items()):
        cpu, memory, full, partial, gpu_memory, model, _, _ = key
        types.append(NodeType(tuple(members), cpu, memory, full, partial, gpu_memory, model, members[0]))
        node_type[members] = t
    return tuple(types), node_type


def _origins(
    problem: Problem, current: Allocation | None, movable: set[str], node_type: np.ndarray
) -> dict[str, tuple[tuple[int, int], ...]]:
    """Where each movable running job runs now: (node type, replicas there), sorted."""
    if current is None or not movable:
        return {}
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    for p in current.placements:
        if p.job in movable:
            seen[p.job][int(node_type[problem.node_index[p.node]])] += 1
    return {job: tuple(sorted(counts.items())) for job, counts in seen.items()}


def _job_class(problem: Problem, members: list[int], origin: tuple[tuple[int, int], ...], running: bool) -> JobClass:
    job = problem.jobs[members[0]]
    return JobClass(
        jobs=tuple(members),
        cpu=job.cpu,
        memory=job.memory,
        gpus=job.gpus,
        share=job.gpu_milli,
        gpu_memory=job.gpu_memory,
        replicas=job.replicas,
        min_replicas=job.min_replicas or job.replicas,
        placement=job.placement,
        value=int(problem.replica_value[members[0]]),
        origin=origin,
        running=running,
    )


def _eligibility(problem: Problem, types: tuple[NodeType, ...], classes: tuple[JobClass, ...]) -> np.ndarray:
    """bool (classes, types): one replica (a whole block for single-node jobs) fits a node of the type."""
    out = np.zeros((len(classes), len(types)), dtype=bool)
    if not types:
        return out
    rep = np.array([t.representative for t in types], dtype=np.int64)
    cpu = np.array([t.cpu for t in types])
    mem = np.array([t.memory for t in types])
    full = np.array([t.full_gpus for t in types])
    gmem = np.array([t.gpu_memory for t in types])
    for k, c in enumerate(classes):
        block = c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1
        ok = problem.allowed_nodes(c.jobs[0])[rep] & (cpu >= block * c.cpu) & (mem >= block * c.memory)
        if c.gpus:
            ok &= full >= block * c.gpus
        elif c.share:
            partial_slots = np.array([sum(f // c.share for f, _ in t.partial) for t in types])
            ok &= full * (MILLI // c.share) + partial_slots >= block
        if (c.gpus or c.share) and c.gpu_memory:
            ok &= gmem >= c.gpu_memory
        out[k] = ok
    return out
