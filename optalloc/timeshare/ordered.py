"""Policies that serve jobs in an order (FIFO, shortest remaining time), in the same framework.

An order is a lexicographic program: the first job's throughput is maximised, then the second's
given the first's, and so on. Each stage is a fractional knapsack over the GPU types (maximise
``sum_k T[j, k] X[j, k]`` with ``sum_k X[j, k] <= 1`` and ``s_j X[j, k]`` at most the GPUs left of type
``k``), which the greedy solves exactly: the fastest type first, as much of it as is left, then the
next. So the whole program is solved in one numpy pass, with no solver, and its answer is an ``X``
like any other policy's (realised by the same rounds). On the pooled view (the ``-agnostic``
variants) a job simply takes as much of the pool as is left.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optalloc.core import Status
from optalloc.timeshare.problem import ShareProblem, Shares
from optalloc.timeshare.program import SharePolicy


class OrderedPolicy(SharePolicy):
    """Serve the jobs in :meth:`order`; each takes its fastest types, as much as is left."""

    summary: ClassVar[str] = ""

    def order(self, problem: ShareProblem) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _solve(self, problem: ShareProblem) -> Shares:
        n, k = problem.n, len(problem.models)
        X = np.zeros((n, k))
        free = problem.capacity.astype(np.float64).copy()
        rates = problem.rates
        live = problem.runnable
        for j in self.order(problem).tolist():
            if not live[j]:
                continue
            left = 1.0
            size = float(problem.scale[j])
            for t in np.argsort(-rates[j], kind="stable").tolist():
                if left <= 1e-12 or rates[j, t] <= 0:
                    break
                take = min(left, free[t] / size)
                if take <= 1e-12:
                    continue
                X[j, t] = take
                free[t] -= take * size
                left -= take
            if not (free > 1e-9).any():
                break
        used = (X * rates).sum()
        return Shares(
            problem, X, self.label, Status.OPTIMAL, "greedy (exact for the lexicographic program)", float(used)
        )
