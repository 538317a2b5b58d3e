"""The objective every engine maximises, and its exact evaluation on any allocation.

Primary term (allocated value): every placed replica of job j is worth ``w_j * v_j`` where
``v_j`` is its milli-GPU demand (1000 x gpus, or the share), or ``cpu_only_value`` for a CPU-only
replica, and ``w_j = priority_base ** rank(priority_j)`` (rank among the problem's distinct priority
levels, lowest = 0).

Secondary terms, in this order of importance, subtracted with their weights:
replicas of running jobs that move or stop (``migration``: each is a restart), GPUs left partly used (``fragmentation``, a linear
proxy for the FGD measure), and nodes beyond the first used by a multi-replica job (``spread``).

In the lexicographic mode the engines optimise the primary term first and the secondary ones only
among its optima; ``Allocation.objective`` is then the primary value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from optalloc.core import _check
from optalloc.core.errors import ProblemError
from optalloc.core.job import MILLI

if TYPE_CHECKING:
    from optalloc.core.allocation import Allocation
    from optalloc.core.problem import Problem


@dataclass(frozen=True)
class ObjectiveWeights:
    """Integer weights of the objective (units: milli-GPU-equivalents)."""

    cpu_only_value: int = 10
    priority_base: int = 10
    migration: int = 200
    fragmentation: int = 1
    spread: int = 1
    lexicographic: bool = False

    def __post_init__(self) -> None:
        for attr in ("cpu_only_value", "migration", "fragmentation", "spread"):
            object.__setattr__(self, attr, _check.integer(attr, getattr(self, attr)))
        object.__setattr__(self, "priority_base", _check.integer("priority_base", self.priority_base, minimum=1))
        if not isinstance(self.lexicographic, bool):
            raise ProblemError("lexicographic", self.lexicographic, "is not true or false")

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "cpu_only_value": self.cpu_only_value,
            "priority_base": self.priority_base,
            "migration": self.migration,
            "fragmentation": self.fragmentation,
            "spread": self.spread,
            "lexicographic": self.lexicographic,
        }


@dataclass(frozen=True)
class ObjectiveValue:
    """The terms of the objective for one allocation."""

    primary: int
    moved_replicas: int
    partial_gpus: int
    extra_nodes: int
    total: int

    def __float__(self) -> float:
        return float(self.total)


def replica_values(problem: Problem) -> np.ndarray:
    """``w_j * v_j`` per job (int64): what one placed replica of each job is worth."""
    return problem.replica_value


def evaluate(problem: Problem, allocation: Allocation) -> ObjectiveValue:
    """The objective of ``allocation`` on ``problem``, exactly as the engines define it."""
    weights = problem.weights
    values = problem.replica_value
    index = problem.job_index
    primary = 0
    nodes_of: dict[str, set[str]] = defaultdict(set)
    used: dict[tuple[str, int], int] = defaultdict(int)
    for p in allocation.placements:
        j = index.get(p.job)
        if j is None:
            continue
        primary += int(values[j])
        nodes_of[p.job].add(p.node)
        for g in p.gpus:
            used[(p.node, g)] += p.gpu_milli
    partial = sum(1 for milli in used.values() if 0 < milli < MILLI)
    extra = sum(len(ns) - 1 for job, ns in nodes_of.items() if problem.jobs[index[job]].replicas > 1)
    moved = 0
    if problem.current is not None:
        # Running replicas that move (other node or GPUs) or stop: each is a restart.
        changes = allocation.diff(problem.current)
        before = problem.current.by_job()
        moved = changes.moved_replicas + sum(len(before[job]) for job in changes.stops if job in index)
    total = primary
    if not weights.lexicographic:
        total -= weights.migration * moved + weights.fragmentation * partial + weights.spread * extra
    return ObjectiveValue(primary, moved, partial, extra, total)
