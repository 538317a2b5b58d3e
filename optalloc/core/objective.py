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

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from optalloc.core import _check
from optalloc.core.errors import ProblemError
from optalloc.core.job import MILLI

if TYPE_CHECKING:
    from optalloc.core.allocation import Allocation, Placement
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
    """The objective of ``allocation`` on ``problem``, exactly as the engines define it.

    Placements naming a job the problem does not have are ignored. One pass over the placements
    builds arrays; the terms are numpy sums over them.
    """
    return evaluate_placements(problem, allocation.placements, allocation)


def evaluate_placements(
    problem: Problem, placements: Sequence[Placement], allocation: Allocation | None = None
) -> ObjectiveValue:
    """:func:`evaluate` of an allocation whose placements are ``placements``.

    ``allocation`` (those placements as an :class:`Allocation`) is needed only when the problem has a
    current allocation, to count the replicas that move or stop; engines that build their answer once
    call this before building it.
    """
    weights = problem.weights
    index = problem.job_index
    count = len(placements)
    job = np.fromiter(map(index.get, map(attrgetter("job"), placements), repeat(-1)), np.int64, count)
    known = job >= 0
    if not known.all():
        placements = [p for p, ok in zip(placements, known.tolist(), strict=True) if ok]
        job = job[known]
        count = len(placements)
    primary = int(problem.replica_value[job].sum()) if count else 0
    # Nodes by name (a placement may name a node the problem does not have: it still counts here).
    nodes = problem.node_index
    node = np.fromiter(map(nodes.get, map(attrgetter("node"), placements), repeat(-1)), np.int64, count)
    if count and node.min() < 0:
        others: dict[str, int] = {}
        node = np.array(
            [
                nodes[p.node] if p.node in nodes else len(nodes) + others.setdefault(p.node, len(others))
                for p in placements
            ],
            dtype=np.int64,
        )
    # GPUs left partly used: milli summed per (node, GPU index).
    gpus = list(map(attrgetter("gpus"), placements))
    held = np.fromiter(map(len, gpus), np.int64, count)
    gpu = np.fromiter(chain.from_iterable(gpus), np.int64, int(held.sum()))
    partial = 0
    if len(gpu):
        milli = np.repeat(np.fromiter(map(attrgetter("gpu_milli"), placements), np.int64, count), held)
        width = int(gpu.max()) + 1
        _, inverse = np.unique(np.repeat(node, held) * width + gpu, return_inverse=True)
        used = np.bincount(inverse, weights=milli.astype(np.float64))
        partial = int(((used > 0) & (used < MILLI)).sum())
    # Nodes beyond the first of each multi-replica job.
    extra = 0
    multi = problem.job_replicas[job] > 1 if count else np.zeros(0, dtype=bool)
    if multi.any():
        pairs = np.unique(job[multi] * (int(node.max()) + 1) + node[multi])
        extra = len(pairs) - len(np.unique(pairs // (int(node.max()) + 1)))
    moved = 0
    if problem.current is not None:
        from optalloc.core.allocation import Allocation

        # Running replicas that move (other node or GPUs) or stop: each is a restart.
        answer = allocation if allocation is not None else Allocation(tuple(placements))
        changes = answer.diff(problem.current)
        before = problem.current.by_job()
        moved = changes.moved_replicas + sum(len(before[name]) for name in changes.stops if name in index)
    total = primary
    if not weights.lexicographic:
        total -= weights.migration * moved + weights.fragmentation * partial + weights.spread * extra
    return ObjectiveValue(primary, moved, partial, extra, total)
