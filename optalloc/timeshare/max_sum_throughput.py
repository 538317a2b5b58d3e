"""Maximum total throughput (Gavel's max-sum-throughput), each job's counted relative to its best and
weighted by priority::

    maximise   sum_j alpha_j * sum_k T[j, k] X[j, k] / max_k T[j, k]
    subject to 0 <= X <= allowed,  sum_k X[j, k] <= 1,  sum_j s_j X[j, k] <= C_k

Normalising by the best throughput makes jobs of different models comparable (a ResNet's steps are
not a Transformer's); a job of ``s`` GPUs costs ``s`` times the capacity for the same gain, so the
program prefers small jobs when GPUs are short. It may give a job nothing (no fairness).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optalloc.timeshare.max_min_fairness import gain
from optalloc.timeshare.problem import ShareProblem
from optalloc.timeshare.program import ConvexPolicy, Frame, Program, frame_params, register


@register("max-sum-throughput", "maximise the total weighted throughput, each job's relative to its best type")
class MaxSumThroughput(ConvexPolicy):
    depends: ClassVar[tuple[str, ...]] = ("jobs", "models", "throughput", "scale", "capacity", "allowed", "weight")

    def _values(self, frame: Frame, problem: ShareProblem) -> None:
        frame.extra["gain"] = frame.pad(gain(problem))

    @classmethod
    def value(cls, problem: ShareProblem, X: np.ndarray, rows: np.ndarray | None = None) -> float | None:
        """The weighted throughput, each job's relative to its best type."""
        terms = gain(problem) * X
        return float((terms if rows is None else terms[rows]).sum())

    def _build(self, stage: int, rows: int, k: int) -> Program:
        import cvxpy as cp

        params, X, constraints = frame_params(rows, k)
        params["gain"] = cp.Parameter((rows, k), nonneg=True, name="gain")
        problem = cp.Problem(cp.Maximize(cp.sum(cp.multiply(params["gain"], X))), constraints)
        return Program(problem, params, {"X": X}, "")
