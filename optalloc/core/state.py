"""Free capacity of every node and GPU as numpy arrays: the working state of the fast engines.

Unlike the rest of the core this object is mutable: heuristics and the simulator place and release
replicas on it many thousands of times. ``verify`` does not use it (it recounts independently).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from itertools import chain
from operator import attrgetter
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.core.allocation import Allocation, Placement, Status, Unplaced
from optalloc.core.allocation import placement_of as placement_of  # (the trusted constructors; re-exported)
from optalloc.core.allocation import unplaced_of as unplaced_of
from optalloc.core.job import MILLI
from optalloc.core.problem import CPU, MEMORY, Problem


@dataclass
class ClusterState:
    """Free resources: ``cpu`` and ``memory`` (n,), ``gpu`` (n, G) free milli per GPU slot.

    Slots beyond a node's GPU count hold -1 so that no demand ever fits them. ``gpu_mem`` (n, G)
    is the free GPU memory per GPU (MiB) for nodes that state it.
    """

    problem: Problem
    cpu: np.ndarray
    memory: np.ndarray
    gpu: np.ndarray
    gpu_mem: np.ndarray

    @classmethod
    def empty(cls, problem: Problem) -> ClusterState:
        n, g = len(problem.nodes), max(problem.max_gpus, 1)
        slots = np.arange(g)[None, :] < problem.node_gpus[:, None]
        gpu = np.where(slots, MILLI, -1).astype(np.int64)
        gpu_mem = np.where(slots, problem.node_gpu_memory[:, None], 0).astype(np.int64)
        return cls(
            problem,
            problem.capacity[:, CPU].copy() if n else np.zeros(0, np.int64),
            problem.capacity[:, MEMORY].copy() if n else np.zeros(0, np.int64),
            gpu,
            gpu_mem,
        )

    @classmethod
    def of(cls, problem: Problem, allocation: Allocation | None = None) -> ClusterState:
        """The state after ``allocation`` (default: the problem's current allocation)."""
        state = cls.empty(problem)
        alloc = problem.current if allocation is None else allocation
        if alloc is not None and alloc.placements:
            state.apply_all(alloc.placements, sign=-1)
        return state

    def apply_all(self, placements: Sequence[Placement], sign: int = -1) -> None:
        """:meth:`apply` of every placement, in a few numpy passes (the same result, the same errors: a
        ``KeyError`` for a name the problem does not have, an ``IndexError`` for a GPU index out of range)."""
        problem = self.problem
        k = len(placements)
        node = np.fromiter(map(problem.node_index.__getitem__, map(attrgetter("node"), placements)), np.int64, k)
        job = np.fromiter(map(problem.job_index.__getitem__, map(attrgetter("job"), placements)), np.int64, k)
        demand = problem.demand
        np.add.at(self.cpu, node, sign * demand[job, CPU])
        np.add.at(self.memory, node, sign * demand[job, MEMORY])
        gpus = list(map(attrgetter("gpus"), placements))
        held = np.fromiter(map(len, gpus), np.int64, k)
        total = int(held.sum())
        if total:
            slot = np.fromiter(chain.from_iterable(gpus), np.int64, total)
            milli = np.fromiter(map(attrgetter("gpu_milli"), placements), np.int64, k)
            entry_node, entry_job = np.repeat(node, held), np.repeat(job, held)
            np.add.at(self.gpu, (entry_node, slot), sign * np.repeat(milli, held))
            np.add.at(self.gpu_mem, (entry_node, slot), sign * problem.job_gpu_memory[entry_job])

    def copy(self) -> ClusterState:
        return ClusterState(self.problem, self.cpu.copy(), self.memory.copy(), self.gpu.copy(), self.gpu_mem.copy())

    # Bookkeeping ---------------------------------------------------------------------------
    def apply(self, placement: Placement, sign: int = -1) -> None:
        """Take (sign=-1) or give back (sign=+1) what ``placement`` uses."""
        n = self.problem.node_index[placement.node]
        j = self.problem.job_index[placement.job]
        job = self.problem.jobs[j]
        self.cpu[n] += sign * job.cpu
        self.memory[n] += sign * job.memory
        for g in placement.gpus:
            self.gpu[n, g] += sign * placement.gpu_milli
            self.gpu_mem[n, g] += sign * job.gpu_memory

    def take(self, job: int, node: int, gpus: tuple[int, ...], replica: int = 0) -> Placement:
        """Place replica ``replica`` of job index ``job`` on node index ``node`` using GPU slots ``gpus``."""
        spec = self.problem.jobs[job]
        self.cpu[node] -= spec.cpu
        self.memory[node] -= spec.memory
        milli = spec.per_gpu_milli
        for g in gpus:
            self.gpu[node, g] -= milli
            if spec.gpu_memory:
                self.gpu_mem[node, g] -= spec.gpu_memory
        return placement_of(spec.name, int(replica), self.problem.nodes[node].name, tuple(int(g) for g in gpus), milli)

    # Vectorised queries --------------------------------------------------------------------
    def gpu_ok(self, job: int) -> np.ndarray:
        """bool (n, G): GPU slots that could take one of the job's GPUs now."""
        spec = self.problem.jobs[job]
        ok = self.gpu >= spec.per_gpu_milli
        if spec.gpu_memory:
            ok &= self.gpu_mem >= spec.gpu_memory
        return ok

    def fits(self, job: int) -> np.ndarray:
        """bool (n,): nodes where one more replica of ``job`` fits now (rules and capacity)."""
        spec = self.problem.jobs[job]
        ok = self.problem.allowed_nodes(job) & (self.cpu >= spec.cpu) & (self.memory >= spec.memory)
        if spec.gpus_used:
            ok &= self.gpu_ok(job).sum(axis=1) >= spec.gpus_used
        return ok

    def free_gpu_milli(self) -> np.ndarray:
        """int64 (n,): free milli-GPU per node."""
        free: np.ndarray = np.where(self.gpu > 0, self.gpu, 0).sum(axis=1)
        return free


def allocation_of(
    placements: tuple[Placement, ...],
    unplaced: tuple[Unplaced, ...],
    *,
    status: Status,
    stats: Mapping[str, Any],
    **values: Any,
) -> Allocation:
    """An :class:`Allocation` of placements and unplaced entries the engine made itself (tuples of
    :class:`Placement` and :class:`Unplaced`), ``status`` a :class:`Status`, without checking every
    entry's type (see :func:`placement_of`). Other fields take ``values`` or their defaults. Tests
    check it equals ``Allocation(...)``.
    """
    out = object.__new__(Allocation)
    given = {"placements": placements, "unplaced": unplaced, "status": status, "stats": MappingProxyType(dict(stats))}
    given.update(values)
    for f in fields(Allocation):
        if f.name not in given:
            if f.default is not MISSING:
                given[f.name] = f.default
            elif f.default_factory is not MISSING:
                given[f.name] = f.default_factory()
            else:  # pragma: no cover - every Allocation field has a default
                raise TypeError(f"allocation_of needs {f.name}")
    out.__dict__.update(given)
    return out
