"""The vocabulary of time sharing: who shares which GPU types, and the answer, a matrix of time fractions.

A :class:`ShareProblem` is ``n`` jobs on ``K`` GPU types: ``throughput[j, k]`` is the rate job ``j``
progresses at when it runs on ``scale[j]`` GPUs of type ``k`` (in work per second: a job's work is
``remaining[j]`` when the problem is posed; 0 where it cannot run there), ``capacity[k]`` the GPUs of
type ``k``. ``allowed[j, k]`` says where it may run at all (throughput > 0, its GPU models, a node
with ``scale[j]`` GPUs of the type). ``weight`` are the priority weights (alpha), ``elapsed`` the
seconds since each job arrived and ``arrival`` its arrival time (the FIFO key).

A policy answers with :class:`Shares`: ``X[j, k]``, the fraction of time job ``j`` spends on type ``k``
(``sum_k X[j, k] <= 1``; ``sum_j scale[j] X[j, k] <= capacity[k]``), the effective throughput
``sum_k X[j, k] throughput[j, k]`` of each job, and how it was found -- the solver's status as data.

The heterogeneity-agnostic view (:meth:`ShareProblem.pooled`) is one column, ``"*"``: every GPU of
the cluster in one pool, each job's throughput its mean over the types it may use. A policy posed on
it decides how much time each job gets, not where; the round mechanism then places it on any GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.core import ProblemError, Status

#: The column of the pooled (heterogeneity-agnostic) view: any GPU type.
POOL = "*"


@dataclass(frozen=True, eq=False)
class ShareProblem:
    """Jobs that share GPU types over time (see the module docstring). Build with :meth:`of`."""

    jobs: tuple[str, ...]
    models: tuple[str, ...]
    throughput: np.ndarray  # float64 (n, K) >= 0
    scale: np.ndarray  # float64 (n,) > 0: GPUs of one type a job runs on (a gang; a share counts its fraction)
    capacity: np.ndarray  # float64 (K,) >= 0: GPUs of each type
    allowed: np.ndarray  # bool (n, K)
    weight: np.ndarray  # float64 (n,) > 0: priority weights alpha
    remaining: np.ndarray  # float64 (n,) >= 0: work left
    work: np.ndarray  # float64 (n,) >= remaining: the whole work (done + left)
    elapsed: np.ndarray  # float64 (n,) >= 0: seconds since arrival
    arrival: np.ndarray  # float64 (n,): the FIFO key

    @classmethod
    def of(
        cls,
        jobs: Sequence[str],
        models: Sequence[str],
        throughput: Any,
        capacity: Any,
        *,
        scale: Any = None,
        allowed: Any = None,
        weight: Any = None,
        remaining: Any = None,
        elapsed: Any = None,
        arrival: Any = None,
        work: Any = None,
    ) -> ShareProblem:
        """Validate and build. Defaults: ``scale`` 1, ``allowed`` where ``throughput > 0``, ``weight`` 1,
        ``remaining`` 1, ``work`` = ``remaining`` (nothing done yet), ``elapsed`` 0, ``arrival`` the list
        order."""
        names = tuple(jobs)
        kinds = tuple(models)
        n, k = len(names), len(kinds)
        if len(set(names)) != n:
            raise ProblemError("jobs", names, "has duplicate names")
        if not k:
            raise ProblemError("models", kinds, "is empty: no GPU type to share")
        if len(set(kinds)) != k:
            raise ProblemError("models", kinds, "has duplicates")
        rate = _matrix("throughput", throughput, (n, k))
        cap = _vector("capacity", capacity, k, default=None)
        ok = rate > 0
        if allowed is not None:
            given = np.asarray(allowed)
            if given.shape != (n, k):
                raise ProblemError("allowed", given.shape, f"is not (jobs, models) = ({n}, {k})")
            ok = ok & given.astype(bool)
        sizes = _vector("scale", scale, n, default=1.0)
        if n and (sizes <= 0).any():
            raise ProblemError(
                f"scale[{int(np.argmax(sizes <= 0))}]", float(sizes.min()), "is not a positive number of GPUs"
            )
        alpha = _vector("weight", weight, n, default=1.0)
        if n and (alpha <= 0).any():
            raise ProblemError(f"weight[{int(np.argmax(alpha <= 0))}]", float(alpha.min()), "is not positive")
        left = _vector("remaining", remaining, n, default=1.0)
        whole = left.copy() if work is None else _vector("work", work, n, default=None)
        if n and (whole < left - 1e-12).any():
            i = int(np.argmax(whole < left - 1e-12))
            raise ProblemError(f"work[{i}]", float(whole[i]), f"is below remaining[{i}] = {float(left[i])}")
        since = _vector("elapsed", elapsed, n, default=0.0)
        order = np.arange(n, dtype=np.float64) if arrival is None else np.asarray(arrival, dtype=np.float64)
        if order.shape != (n,) or not np.isfinite(order).all():
            raise ProblemError("arrival", order.shape, f"is not {n} finite times")
        arrays = (rate, sizes, cap, ok, alpha, left, whole, since, order)
        for a in arrays:
            a.setflags(write=False)
        return cls(names, kinds, *arrays)

    # Views ----------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.jobs)

    @property
    def runnable(self) -> np.ndarray:
        """bool (n,): jobs that have work left and may run on a type that has GPUs."""
        out: np.ndarray = (self.allowed & (self.capacity > 0)[None, :]).any(axis=1) & (self.remaining > 0)
        return out

    @property
    def rates(self) -> np.ndarray:
        """float64 (n, K): the throughput where allowed, 0 elsewhere."""
        out: np.ndarray = np.where(self.allowed, self.throughput, 0.0)
        return out

    @property
    def best(self) -> np.ndarray:
        """float64 (n,): each job's fastest allowed throughput (0: it runs nowhere)."""
        return self.rates.max(axis=1) if self.n else np.zeros(0)

    def equal_share(self) -> np.ndarray:
        """float64 (n, K): the equal-share allocation fairness is measured against.

        Every runnable job gets the same fraction ``min(1, C / S)`` of its time (``C`` the cluster's
        GPUs, ``S`` the GPUs the runnable jobs ask for), spread over the GPU types it may use in
        proportion to their capacity: what it would get from 1/N of the cluster, as Gavel's
        "isolated" allocation.
        """
        live = self.runnable
        total = float(self.capacity.sum())
        asked = float(self.scale[live].sum())
        part = min(1.0, total / asked) if asked > 0 else 0.0
        cap = np.where(self.allowed, self.capacity[None, :], 0.0)
        per = cap.sum(axis=1, keepdims=True)
        out: np.ndarray = np.divide(cap, per, out=np.zeros_like(cap), where=per > 0) * part
        out[~live] = 0.0
        return out

    def equal_rate(self) -> np.ndarray:
        """float64 (n,): the effective throughput of :meth:`equal_share`."""
        out: np.ndarray = (self.equal_share() * self.rates).sum(axis=1)
        return out

    # Derived problems ----------------------------------------------------------------------
    def pooled(self) -> ShareProblem:
        """The heterogeneity-agnostic view: one pool of every GPU, each job's throughput the mean of its
        allowed types' (what it gets on a GPU picked without looking at the type)."""
        rates = self.rates
        count = self.allowed.sum(axis=1)
        mean = np.divide(rates.sum(axis=1), count, out=np.zeros(self.n), where=count > 0)
        return ShareProblem.of(
            self.jobs,
            (POOL,),
            mean[:, None],
            [float(self.capacity.sum())],
            scale=self.scale,
            allowed=(count > 0)[:, None],
            weight=self.weight,
            remaining=self.remaining,
            elapsed=self.elapsed,
            arrival=self.arrival,
            work=self.work,
        )

    def subset(self, jobs: Sequence[int] | np.ndarray, capacity: Any = None) -> ShareProblem:
        """The problem of the jobs at positions ``jobs`` on ``capacity`` GPUs per type (default: all):
        what a partitioned solve gives each part."""
        idx = np.asarray(jobs, dtype=np.int64)
        if idx.ndim != 1 or (len(idx) and (idx.min() < 0 or idx.max() >= self.n)):
            raise ProblemError("jobs", idx.tolist()[:5], f"are not positions of the {self.n} jobs")
        return ShareProblem.of(
            tuple(self.jobs[i] for i in idx.tolist()),
            self.models,
            self.throughput[idx],
            self.capacity if capacity is None else capacity,
            scale=self.scale[idx],
            allowed=self.allowed[idx],
            weight=self.weight[idx],
            remaining=self.remaining[idx],
            elapsed=self.elapsed[idx],
            arrival=self.arrival[idx],
            work=self.work[idx],
        )


@dataclass(frozen=True, eq=False)
class Shares:
    """A policy's answer: ``X`` (n, K) time fractions, or None when the solver found none.

    ``status``: optimal / feasible (the solver's accuracy was below its tolerance: ``optimal
    inaccurate``) / infeasible / unknown; ``solver_status`` the solver's own word; ``objective`` the
    policy's value (its meaning is the policy's: docs/timeshare.md); ``solve_time`` seconds, set-up
    included; ``stats`` more (stages, padding, the solver used).
    """

    problem: ShareProblem
    X: np.ndarray | None
    policy: str
    status: Status
    solver_status: str = ""
    objective: float | None = None
    solve_time: float = 0.0
    stats: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        return self.X is not None and self.status.has_solution

    @property
    def effective(self) -> np.ndarray:
        """float64 (n,): ``sum_k X[j, k] throughput[j, k]`` (zeros without a solution)."""
        if self.X is None:
            return np.zeros(self.problem.n)
        out: np.ndarray = (self.X * self.problem.rates).sum(axis=1)
        return out

    def by_job(self) -> dict[str, dict[str, float]]:
        """``{job: {model: fraction}}`` without the zeros (for logs and files)."""
        if self.X is None:
            return {}
        out: dict[str, dict[str, float]] = {}
        models = self.problem.models
        for j, name in enumerate(self.problem.jobs):
            row = {models[k]: float(v) for k, v in enumerate(self.X[j]) if v > 1e-9}
            if row:
                out[name] = row
        return out


def _matrix(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    out = np.array(value, dtype=np.float64, copy=True).reshape(shape) if np.size(value) == shape[0] * shape[1] else None
    if out is None:
        raise ProblemError(name, np.shape(value), f"is not (jobs, models) = {shape}")
    if not np.isfinite(out).all() or (out < 0).any():
        bad = np.argwhere(~np.isfinite(out) | (out < 0))[0]
        raise ProblemError(f"{name}[{bad[0]}, {bad[1]}]", float(out[tuple(bad)]), "is not a rate >= 0")
    return out


def _vector(name: str, value: Any, size: int, *, default: float | None) -> np.ndarray:
    if value is None:
        if default is None:
            raise ProblemError(name, None, "is missing")
        return np.full(size, default, dtype=np.float64)
    out = np.array(value, dtype=np.float64, copy=True)
    if out.shape != (size,):
        raise ProblemError(name, out.shape, f"is not {size} values")
    if not np.isfinite(out).all() or (out < 0).any():
        i = int(np.argmax(~np.isfinite(out) | (out < 0)))
        raise ProblemError(f"{name}[{i}]", float(out[i]), "is not a finite number >= 0")
    return out
