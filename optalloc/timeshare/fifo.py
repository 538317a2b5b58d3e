"""FIFO: jobs in order of priority weight (highest first), then arrival; each takes its fastest GPU
types (Gavel's heterogeneity-aware FIFO), as much as is left (see :mod:`~optalloc.timeshare.ordered`)."""

from __future__ import annotations

import numpy as np

from optalloc.timeshare.ordered import OrderedPolicy
from optalloc.timeshare.problem import ShareProblem
from optalloc.timeshare.program import register


@register("fifo", "first in, first out (by priority weight, then arrival); each job on its fastest types", convex=False)
class Fifo(OrderedPolicy):
    def order(self, problem: ShareProblem) -> np.ndarray:
        return np.lexsort((np.arange(problem.n), problem.arrival, -problem.weight))
