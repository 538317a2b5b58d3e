"""Shortest remaining time first: jobs in order of ``R_j / (alpha_j max_k T[j, k])``, the time left on
their fastest type divided by their priority weight (on the pooled view, at their mean throughput);
each takes its fastest GPU types, as much as is left (see :mod:`~optalloc.timeshare.ordered`)."""

from __future__ import annotations

import numpy as np

from optalloc.timeshare.ordered import OrderedPolicy
from optalloc.timeshare.problem import ShareProblem
from optalloc.timeshare.program import register


@register("srtf", "shortest remaining time first (time left on the fastest type, over the weight)", convex=False)
class ShortestRemainingTime(OrderedPolicy):
    def order(self, problem: ShareProblem) -> np.ndarray:
        best = problem.best
        left = np.divide(problem.remaining, best * problem.weight, out=np.full(problem.n, np.inf), where=best > 0)
        return np.lexsort((np.arange(problem.n), problem.arrival, left))
