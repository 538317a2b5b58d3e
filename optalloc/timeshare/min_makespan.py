"""Minimum makespan (Gavel's min-total-duration): finish the last job as early as possible, if every job
kept its share until then. A job finishes after ``R_j / sum_k T[j, k] X[j, k]`` seconds (its remaining
work over its effective throughput); with priority weights, job ``j`` must finish by ``M / alpha_j``.
Minimising ``M`` is linear in ``z = 1 / M`` (the linear-fractional substitution; Gavel bisects)::

    maximise   z
    subject to sum_k T[j, k] X[j, k] >= alpha_j R_j z                    for every job j
               0 <= X <= allowed,  sum_k X[j, k] <= 1,  sum_j s_j X[j, k] <= C_k

The makespan is ``1 / z``. Stage 2 keeps ``z`` and maximises the weighted normalised throughput
(jobs that finish before the last one use the GPUs the last one does not need).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from optalloc.timeshare.max_min_fairness import among, gain
from optalloc.timeshare.problem import ShareProblem
from optalloc.timeshare.program import STAGE_TOLERANCE, ConvexPolicy, Frame, Program, frame_params, register


@register("min-makespan", "minimise the time until the last job finishes (Gavel's min-total-duration)")
class MinMakespan(ConvexPolicy):
    stages: ClassVar[int] = 2

    def _values(self, frame: Frame, problem: ShareProblem) -> None:
        live = problem.runnable & (problem.best > 0)
        # Scaled for the solver: throughputs relative to each job's best (in (0, 1]); the time each
        # job needs at its best, divided by the largest of them (``unit``), so z* is about 1.
        best = np.where(live, problem.best, 1.0)
        need = np.where(live, problem.weight * problem.remaining / best, 0.0)
        unit = float(need.max()) if live.any() and need.max() > 0 else 1.0
        frame.extra["rates"] = frame.pad(problem.rates * live[:, None] / best[:, None])
        frame.extra["need"] = frame.pad(need / unit)
        frame.extra["gain"] = frame.pad(gain(problem))
        frame.extra["unit"] = np.array([unit])

    balance: ClassVar[int] = -1

    @classmethod
    def value(cls, problem: ShareProblem, X: np.ndarray, rows: np.ndarray | None = None) -> float | None:
        """The makespan: the latest ``alpha_j R_j / eff_j`` (seconds; inf when a job gets nothing)."""
        live = among(problem.runnable & (problem.best > 0), rows)
        if not live.any():
            return None
        eff = (problem.rates * X).sum(axis=1)[live]
        need = problem.weight[live] * problem.remaining[live]
        if (eff <= 0).any():
            return float("inf")
        return float((need / eff).max())

    def _objective(self, frame: Frame, first: float) -> float:
        return float(frame.extra["unit"][0]) / first if first > 0 else float("inf")

    def _second(self, frame: Frame, first: float) -> dict[str, Any]:
        return {"floor": frame.extra["need"] * first * (1 - STAGE_TOLERANCE)}

    def _build(self, stage: int, rows: int, k: int) -> Program:
        import cvxpy as cp

        params, X, constraints = frame_params(rows, k)
        params["rates"] = cp.Parameter((rows, k), nonneg=True, name="rates")
        # eff[j] = job j's effective throughput (work per second)
        eff = cp.sum(cp.multiply(params["rates"], X), axis=1)
        if stage == 0:
            params["need"] = cp.Parameter(rows, nonneg=True, name="need")
            z = cp.Variable(nonneg=True, name="z")  # z = 1 / makespan
            problem = cp.Problem(cp.Maximize(z), [*constraints, eff >= cp.multiply(params["need"], z)])
            return Program(problem, params, {"X": X, "z": z}, "")
        # Stage 2: every job at least as fast as the makespan needs; the rest of the GPUs to throughput.
        params["floor"] = cp.Parameter(rows, nonneg=True, name="floor")
        params["gain"] = cp.Parameter((rows, k), nonneg=True, name="gain")
        problem = cp.Problem(
            cp.Maximize(cp.sum(cp.multiply(params["gain"], X))), [*constraints, eff >= params["floor"]]
        )
        return Program(problem, params, {"X": X}, "")
