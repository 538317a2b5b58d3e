"""Finish-time fairness (Themis, NSDI'20; Gavel §4.2): no job's finish time stretched much more than the
others', relative to what an equal share would give it.

Job ``j`` has been in the system ``e_j`` seconds, has ``R_j`` of its work ``W_j`` left and an
equal-share throughput ``eq_j``. Under shares X it finishes ``e_j + R_j / eff_j`` seconds after
arriving, against ``W_j / eq_j`` with an equal share of the cluster from the start: the ratio is
``rho_j``. Stage 1 minimises the largest ``alpha_j rho_j``; stage 2 keeps it and minimises their sum::

    minimise   t
    subject to alpha_j (e_j + R_j u_j) eq_j / W_j <= t                    for every job j
               u_j >= 1 / sum_k T[j, k] X[j, k]                           (convex: inv_pos)
               0 <= X <= allowed,  sum_k X[j, k] <= 1,  sum_j s_j X[j, k] <= C_k

``u_j >= 1 / eff_j`` is a second-order cone, so this program goes to Clarabel, not HiGHS.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optalloc.timeshare.max_min_fairness import among
from optalloc.timeshare.problem import ShareProblem
from optalloc.timeshare.program import ConvexPolicy, Frame, Program, frame_params, register


@register("finish-time-fairness", "minimise the largest weighted finish-time ratio rho (Themis)")
class FinishTimeFairness(ConvexPolicy):
    depends: ClassVar[tuple[str, ...]] = (
        "jobs",
        "models",
        "throughput",
        "scale",
        "capacity",
        "allowed",
        "weight",
        "remaining",
        "work",
        "elapsed",
    )
    stages: ClassVar[int] = 2
    maximize: ClassVar[bool] = False
    linear: ClassVar[bool] = False

    def _values(self, frame: Frame, problem: ShareProblem) -> None:
        live = problem.runnable
        eq = problem.equal_rate()
        best = problem.best
        ok = live & (eq > 0) & (problem.work > 0) & (best > 0)
        factor = np.where(ok, problem.weight * eq / np.where(problem.work > 0, problem.work, 1.0), 0.0)
        # Scaled for the solver: each job's throughputs relative to its best (in (0, 1]), so u_j is
        # best_j / eff_j >= 1 and the slope carries 1 / best_j (raw rates of 1e-5 work/s make u 1e5).
        unit = np.where(ok, best, 1.0)
        frame.extra["rates"] = frame.pad(problem.rates * ok[:, None] / unit[:, None])
        frame.extra["base"] = frame.pad(factor * problem.elapsed)  # alpha e eq / W
        frame.extra["slope"] = frame.pad(factor * problem.remaining / unit)  # alpha R eq / (W best)
        # inv_pos needs a positive argument on rows that are not jobs: 1 there.
        frame.extra["pad"] = frame.pad(np.where(ok, 0.0, 1.0), fill=1.0)

    balance: ClassVar[int] = -1

    @classmethod
    def value(cls, problem: ShareProblem, X: np.ndarray, rows: np.ndarray | None = None) -> float | None:
        """The largest weighted finish-time ratio ``alpha_j rho_j`` (inf when a job gets nothing)."""
        eq = problem.equal_rate()
        ok = among(problem.runnable & (eq > 0) & (problem.work > 0) & (problem.best > 0), rows)
        if not ok.any():
            return None
        eff = (problem.rates * X).sum(axis=1)[ok]
        if (eff <= 0).any():
            return float("inf")
        factor = problem.weight[ok] * eq[ok] / problem.work[ok]
        return float((factor * (problem.elapsed[ok] + problem.remaining[ok] / eff)).max())

    def _build(self, stage: int, rows: int, k: int) -> Program:
        import cvxpy as cp

        params, X, constraints = frame_params(rows, k)
        for name in ("base", "slope", "pad"):
            params[name] = cp.Parameter(rows, nonneg=True, name=name)
        params["rates"] = cp.Parameter((rows, k), nonneg=True, name="rates")
        # u[j] >= best_j / effective throughput of job j
        u = cp.Variable(rows, nonneg=True, name="u")
        eff = cp.sum(cp.multiply(params["rates"], X), axis=1) + params["pad"]
        rho = params["base"] + cp.multiply(params["slope"], u)  # alpha_j rho_j
        constraints = [*constraints, u >= cp.inv_pos(eff)]
        if stage == 0:
            t = cp.Variable(name="t")
            problem = cp.Problem(cp.Minimize(t), [*constraints, rho <= t])
            return Program(problem, params, {"X": X, "t": t, "u": u}, "")
        params["first"] = cp.Parameter(nonneg=True, name="first")
        problem = cp.Problem(cp.Minimize(cp.sum(rho)), [*constraints, rho <= params["first"]])
        return Program(problem, params, {"X": X, "u": u}, "")
