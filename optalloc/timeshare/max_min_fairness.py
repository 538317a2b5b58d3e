"""Max-min fairness (Gavel's LAS, OSDI'20 §4.1): the worst-off job, weighted by priority, as well off as it can be.

Each job's effective throughput is measured against what it would get from an equal share of the
cluster (:meth:`~optalloc.timeshare.problem.ShareProblem.equal_rate`), and divided by its priority
weight alpha. Stage 1 maximises the smallest of these; stage 2 keeps that minimum and maximises the
weighted throughput of :mod:`~optalloc.timeshare.max_sum_throughput` (a maximin has many optima, and
the ones that leave GPUs idle cost everyone time)::

    maximise   t
    subject to t <= (1 / alpha_j) * sum_k T[j, k] X[j, k] / eq_j        for every job j
               0 <= X <= allowed,  sum_k X[j, k] <= 1,  sum_j s_j X[j, k] <= C_k

The heterogeneity-agnostic variant poses it on one pool of GPUs (``max-min-fairness-agnostic``):
equal time for everyone, wherever it lands.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optalloc.timeshare.problem import ShareProblem
from optalloc.timeshare.program import ConvexPolicy, Frame, Program, frame_params, register


@register("max-min-fairness", "maximise the smallest weighted throughput relative to an equal share (Gavel's LAS)")
class MaxMinFairness(ConvexPolicy):
    depends: ClassVar[tuple[str, ...]] = ("jobs", "models", "throughput", "scale", "capacity", "allowed", "weight")
    stages: ClassVar[int] = 2

    def _values(self, frame: Frame, problem: ShareProblem) -> None:
        live = problem.runnable
        rates = problem.rates
        eq = problem.equal_rate()
        scale = np.where(live & (eq > 0), 1.0 / (problem.weight * np.where(eq > 0, eq, 1.0)), 0.0)
        norm = rates * scale[:, None]  # N[j, k]: the weighted normalised throughput per unit of X
        # Rows that are not jobs (or cannot run) must not bind t: they get a slack above any t.
        ceiling = float(norm.sum(axis=1).max()) + 1.0 if problem.n else 1.0
        frame.extra["norm"] = frame.pad(norm)
        frame.extra["slack"] = np.where(frame.live > 0, 0.0, ceiling)
        frame.extra["gain"] = frame.pad(gain(problem))

    balance: ClassVar[int] = 1

    @classmethod
    def value(cls, problem: ShareProblem, X: np.ndarray, rows: np.ndarray | None = None) -> float | None:
        """The smallest weighted throughput relative to the equal share (stage 1's ``t``)."""
        eq = problem.equal_rate()
        live = among(problem.runnable & (eq > 0), rows)
        if not live.any():
            return None
        eff = (problem.rates * X).sum(axis=1)
        return float((eff[live] / (problem.weight[live] * eq[live])).min())

    def _build(self, stage: int, rows: int, k: int) -> Program:
        import cvxpy as cp

        params, X, constraints = frame_params(rows, k)
        params["norm"] = cp.Parameter((rows, k), nonneg=True, name="norm")
        params["slack"] = cp.Parameter(rows, nonneg=True, name="slack")
        # rel[j] = job j's throughput over its equal-share throughput, divided by its weight
        rel = cp.sum(cp.multiply(params["norm"], X), axis=1) + params["slack"]
        if stage == 0:
            t = cp.Variable(name="t")
            problem = cp.Problem(cp.Maximize(t), [*constraints, rel >= t])
            return Program(problem, params, {"X": X, "t": t}, "")
        # Stage 2: keep the maximin, maximise the weighted normalised throughput.
        params["first"] = cp.Parameter(name="first")
        params["gain"] = cp.Parameter((rows, k), nonneg=True, name="gain")
        problem = cp.Problem(
            cp.Maximize(cp.sum(cp.multiply(params["gain"], X))), [*constraints, rel >= params["first"]]
        )
        return Program(problem, params, {"X": X}, "")


def among(mask: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``mask`` restricted to the positions ``rows`` (None: all)."""
    if rows is None:
        return mask
    out = np.zeros_like(mask)
    out[rows] = mask[rows]
    return out


def gain(problem: ShareProblem) -> np.ndarray:
    """float64 (n, K): alpha_j T[j, k] / max_k T[j, k], the weighted throughput relative to the job's best
    (what max-sum-throughput and the tie-breaking stages maximise)."""
    best = problem.best
    out: np.ndarray = np.divide(
        problem.rates * problem.weight[:, None],
        best[:, None],
        out=np.zeros((problem.n, len(problem.models))),
        where=best[:, None] > 0,
    )
    out[~problem.runnable] = 0.0
    return out
