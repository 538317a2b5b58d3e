"""Queue orderings: which job a heuristic considers next. Each is one ``np.lexsort`` over job views.

Every ordering breaks its last ties by the job's position in the problem (so results are
deterministic), and all but ``fcfs`` and ``round-robin`` break earlier ties first-come-first-served.

- ``fcfs``: arrival time, then input position.
- ``sjf`` / ``ljf``: estimated duration ascending / descending; jobs without an estimate go last,
  in FCFS order among themselves.
- ``priority``: highest priority first, FCFS within a level.
- ``round-robin``: the FCFS queue rotated to start at position ``round % jobs``; successive
  scheduling rounds (``round = 0, 1, 2, ...``) give every job its turn at the head of the queue,
  so none starves behind a job that never fits. The round is an explicit argument: no hidden state.
- ``largest-demand-first``: dominant resource share of the whole job (all replicas) against the
  cluster totals, largest first (the DRF measure): ``max(cpu / total cpu, memory / total memory,
  milli-GPU / total milli-GPU)``.
- ``gpu-first``: GPU demand of the whole job (milli-GPU, all replicas) largest first, then the
  leanest first: the least CPU and memory per GPU (each as a share of the largest node's). For batch
  packing of an over-subscribed queue: big GPU jobs first, and among equals those that leave their
  nodes the most CPU and memory for the GPUs still free (CPU-only jobs last).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optalloc.core import Problem, ProblemError
from optalloc.core.problem import CPU, GPU, MEMORY


def _positions(problem: Problem) -> np.ndarray:
    return np.arange(len(problem.jobs))


def fcfs(problem: Problem, round: int = 0) -> np.ndarray:
    return np.lexsort((_positions(problem), problem.job_arrival))


def sjf(problem: Problem, round: int = 0) -> np.ndarray:
    duration = problem.job_duration
    unknown = np.isnan(duration)
    return np.lexsort((_positions(problem), problem.job_arrival, np.where(unknown, 0.0, duration), unknown))


def ljf(problem: Problem, round: int = 0) -> np.ndarray:
    duration = problem.job_duration
    unknown = np.isnan(duration)
    return np.lexsort((_positions(problem), problem.job_arrival, np.where(unknown, 0.0, -duration), unknown))


def priority(problem: Problem, round: int = 0) -> np.ndarray:
    return np.lexsort((_positions(problem), problem.job_arrival, -problem.job_priority))


def round_robin(problem: Problem, round: int = 0) -> np.ndarray:
    queue = fcfs(problem)
    if not len(queue):
        return queue
    return np.roll(queue, -(round % len(queue)))


def dominant_share(problem: Problem) -> np.ndarray:
    """float64 (m,): each job's largest share of a cluster resource, all replicas counted."""
    if not problem.jobs:
        return np.zeros(0)
    total = problem.capacity.sum(axis=0).astype(np.float64)
    demand = problem.demand[:, [CPU, MEMORY, GPU]] * problem.job_replicas[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, demand / np.where(total > 0, total, 1.0), np.where(demand > 0, np.inf, 0.0))
    result: np.ndarray = share.max(axis=1)
    return result


def largest_demand_first(problem: Problem, round: int = 0) -> np.ndarray:
    return np.lexsort((_positions(problem), problem.job_arrival, -dominant_share(problem)))


def gpu_first(problem: Problem, round: int = 0) -> np.ndarray:
    if not problem.jobs:
        return np.zeros(0, dtype=np.int64)
    demand = problem.demand
    gpu = demand[:, GPU] * problem.job_replicas
    largest = np.maximum(problem.capacity.max(axis=0), 1).astype(np.float64) if len(problem.nodes) else np.ones(3)
    weight = demand[:, CPU] / largest[CPU] + demand[:, MEMORY] / largest[MEMORY]
    lean = weight / np.maximum(demand[:, GPU], 1) * 1000.0  # per GPU of one replica
    return np.lexsort((_positions(problem), problem.job_arrival, lean, -gpu))


ORDERINGS: dict[str, Callable[[Problem, int], np.ndarray]] = {
    "fcfs": fcfs,
    "sjf": sjf,
    "ljf": ljf,
    "priority": priority,
    "round-robin": round_robin,
    "largest-demand-first": largest_demand_first,
    "gpu-first": gpu_first,
}

ORDERS: tuple[str, ...] = tuple(ORDERINGS)


def order(problem: Problem, name: str = "fcfs", *, round: int = 0) -> np.ndarray:
    """Job indices (int64) in the order the ordering ``name`` considers them."""
    if name not in ORDERINGS:
        raise ProblemError("order", name, f"is not one of {', '.join(ORDERS)}")
    if isinstance(round, bool) or not isinstance(round, int | np.integer) or round < 0:
        raise ProblemError("round", round, "is not a non-negative integer")
    return ORDERINGS[name](problem, int(round)).astype(np.int64)
