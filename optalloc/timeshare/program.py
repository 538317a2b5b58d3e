"""Policies by name, and the machinery the convex ones share: programs built once, parameters updated.

Every policy is a class registered with :func:`register` under its name, in a file of its own
(``max_min_fairness.py``, ...); :func:`get_policy` builds one (``aware=False``, or the name with the
suffix ``-agnostic``, poses it on :meth:`~optalloc.timeshare.problem.ShareProblem.pooled`).

The convex policies (:class:`ConvexPolicy`) build each cvxpy program once per size with
``cp.Parameter`` s for every number that changes from round to round (throughputs, weights,
capacities, the remaining work) -- cvxpy's DPP -- and only set values before each solve, so re-solves
skip canonicalisation. The number of jobs changes at every arrival and completion, so programs are
built for a *bucket* of rows (the next power of two, at least 16) and the rows beyond the jobs are
switched off through the parameters (no share, no constraint). The solver's status is checked against
``OPTIMAL`` / ``OPTIMAL_INACCURATE``; anything else is an answer without ``X`` whose status says so --
never clipped values.

cvxpy is imported inside the functions that need it (the ``fair`` extra); without it the convex
policies raise :class:`~optalloc.core.MethodUnavailable` when used.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from optalloc.core import MethodUnavailable, ProblemError, Status
from optalloc.timeshare.problem import ShareProblem, Shares

log = logging.getLogger(__name__)

#: Suffix of the heterogeneity-agnostic variant of a policy's name.
AGNOSTIC = "-agnostic"
#: Smallest bucket of rows a program is built for.
MIN_BUCKET = 16
#: A second stage keeps the first stage's optimum within this relative tolerance.
STAGE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class PolicyInfo:
    """A registered policy: its name, one line on what it does, the class, whether it needs cvxpy."""

    name: str
    summary: str
    factory: type[SharePolicy]
    convex: bool


_POLICIES: dict[str, PolicyInfo] = {}


def register(name: str, summary: str, *, convex: bool = True) -> Callable[[type[SharePolicy]], type[SharePolicy]]:
    """Class decorator: register a policy under ``name`` (one file per policy)."""

    def wrap(cls: type[SharePolicy]) -> type[SharePolicy]:
        if name in _POLICIES:
            raise ValueError(f"time-share policy {name!r} is registered twice")
        cls.name = name
        _POLICIES[name] = PolicyInfo(name, summary, cls, convex)
        return cls

    return wrap


def policy_names(*, agnostic: bool = False) -> tuple[str, ...]:
    """The registered names (with ``agnostic``, the ``-agnostic`` variants after them)."""
    _load()
    names = tuple(_POLICIES)
    return names + tuple(n + AGNOSTIC for n in names) if agnostic else names


def describe(name: str) -> str:
    """One line on the policy called ``name`` (``-agnostic`` names included)."""
    base, aware = _split(name)
    text = _info(base).summary
    return text if aware else f"{text}; heterogeneity-agnostic (one pool of GPUs)"


def get_policy(name: str, *, aware: bool = True, **options: Any) -> SharePolicy:
    """The policy called ``name`` (``<name>-agnostic``, or ``aware=False``: the agnostic variant).

    ``options`` go to the policy's constructor (``solver``, ``time_limit``, ...); ``parts`` > 1 (with
    ``executor``, ``ray_address``, ``seed``, ``repair``, ``rebalance``) gives the policy solved partitioned
    (:class:`~optalloc.timeshare.partitioned.Partitioned`, POP). An unknown name raises
    :class:`MethodUnavailable` listing the valid ones; a convex policy without cvxpy installed raises it
    too, naming the ``fair`` extra.
    """
    base, aware_name = _split(name)
    info = _info(base)
    if info.convex:
        require_cvxpy()
    parts = options.pop("parts", None)
    split = {
        key: options.pop(key) for key in ("executor", "ray_address", "seed", "repair", "rebalance") if key in options
    }
    if parts is None and split:
        raise ProblemError("options", sorted(split), "are options of a partitioned solve: give parts too")
    if parts is not None and not (parts == 1 and isinstance(parts, int) and not isinstance(parts, bool)):
        from optalloc.timeshare.partitioned import Partitioned

        return Partitioned(base, aware=aware and aware_name, parts=parts, **split, **options)
    return info.factory(aware=aware and aware_name, **options)


def require_cvxpy() -> None:
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        raise MethodUnavailable(
            "the convex time-share policies need cvxpy, which is not installed: pip install 'optalloc[fair]'"
        ) from None


def _fingerprint(problem: ShareProblem, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The values of ``fields`` of ``problem``, comparable with ``==`` (arrays as bytes)."""
    out: list[Any] = []
    for name in fields:
        value = getattr(problem, name)
        out.append(value.tobytes() if isinstance(value, np.ndarray) else value)
    return tuple(out)


def _split(name: str) -> tuple[str, bool]:
    if not isinstance(name, str) or not name:
        raise ProblemError("policy", name, "is not a policy name")
    if name.endswith(AGNOSTIC):
        return name[: -len(AGNOSTIC)], False
    return name, True


def _info(name: str) -> PolicyInfo:
    _load()
    info = _POLICIES.get(name)
    if info is None:
        valid = ", ".join(policy_names())
        raise MethodUnavailable(f"unknown time-share policy {name!r}; valid policies: {valid} (each also -agnostic)")
    return info


def _load() -> None:
    """Import the policy files (each registers itself)."""
    from optalloc.timeshare import (  # noqa: F401
        fifo,
        finish_time_fairness,
        max_min_fairness,
        max_sum_throughput,
        min_makespan,
        srtf,
    )


# The policies' interface -------------------------------------------------------------------------


class SharePolicy:
    """A time-share policy: ``solve(problem) -> Shares``. Subclasses implement :meth:`_solve`.

    Every policy takes the same options, so that a driver can configure any of them: ``aware``, and
    for the convex ones ``solver``, ``time_limit`` and ``solver_options`` (the others have no solver
    and ignore them).
    """

    name: ClassVar[str] = ""
    #: The fields of a :class:`ShareProblem` the answer depends on: a problem equal to the last one in
    #: these is answered with the last answer (what a re-solve would give) instead of solving again.
    depends: ClassVar[tuple[str, ...]] = (
        "jobs",
        "models",
        "throughput",
        "scale",
        "capacity",
        "allowed",
        "weight",
        "remaining",
    )

    def __init__(
        self,
        *,
        aware: bool = True,
        solver: str | None = None,
        time_limit: float | None = None,
        solver_options: dict[str, Any] | None = None,
    ) -> None:
        self.aware = bool(aware)
        self._memo: tuple[tuple[Any, ...], Shares] | None = None
        self.reused = 0  # answers given again without solving (their inputs had not changed)
        del solver, solver_options
        if time_limit is not None and not (isinstance(time_limit, int | float) and time_limit > 0):
            raise ProblemError("time_limit", time_limit, "is not a positive number of seconds")

    @property
    def label(self) -> str:
        return self.name if self.aware else self.name + AGNOSTIC

    def solve(self, problem: ShareProblem) -> Shares:
        """The shares of ``problem`` (posed on its pooled view when the policy is agnostic)."""
        if not isinstance(problem, ShareProblem):
            raise ProblemError("problem", type(problem).__name__, "is not a ShareProblem")
        seen = problem if self.aware else problem.pooled()
        started = time.perf_counter()
        key = _fingerprint(seen, self.dependencies())
        if self._memo is not None and self._memo[0] == key:
            last = self._memo[1]
            self.reused += 1
            stats = {**last.stats, "reused": True}
            return Shares(
                seen,
                last.X,
                last.policy,
                last.status,
                last.solver_status,
                last.objective,
                time.perf_counter() - started,
                stats,
            )
        if not seen.runnable.any():
            X = np.zeros((seen.n, len(seen.models)))
            return Shares(seen, X, self.label, Status.OPTIMAL, "nothing to run", 0.0, time.perf_counter() - started)
        shares = self._solve(seen)
        out = Shares(
            seen,
            shares.X,
            self.label,
            shares.status,
            shares.solver_status,
            shares.objective,
            time.perf_counter() - started,
            shares.stats,
        )
        self._memo = (key, out) if out.ok else None
        return out

    def close(self) -> None:
        """Release what the policy holds outside this process (a partitioned policy's worker pool)."""

    def __enter__(self) -> SharePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dependencies(self) -> tuple[str, ...]:
        """The fields of a :class:`ShareProblem` the answer depends on (the class's :attr:`depends`)."""
        return self.depends

    #: How the policy's objective moves with capacity, for a partitioned solve's balancing pass: +1 it
    #: grows (a maximin), -1 it shrinks (a makespan, a largest ratio), 0 it is a sum (no balancing).
    balance: ClassVar[int] = 0

    @classmethod
    def value(cls, problem: ShareProblem, X: np.ndarray, rows: np.ndarray | None = None) -> float | None:
        """The policy's objective (as :attr:`Shares.objective` reports it) of the time fractions ``X``
        on ``problem`` (over the jobs at positions ``rows`` only: the worst of them, for a min or a max),
        or None for a policy without one: what a partitioned answer is measured by on the whole problem."""
        del problem, X, rows
        return None

    def solve_part(self, problem: ShareProblem, jobs: Any, capacity: Any) -> Shares:
        """The policy on the jobs at positions ``jobs`` with ``capacity`` GPUs per type: the building
        block of a partitioned solve (each part its jobs and its slice of the cluster)."""
        return self.solve(problem.subset(jobs, capacity))

    def _solve(self, problem: ShareProblem) -> Shares:  # pragma: no cover - abstract
        raise NotImplementedError


# Convex policies: DPP programs per bucket -------------------------------------------------------


def bucket(n: int) -> int:
    """Rows a program is built for: the next power of two, at least :data:`MIN_BUCKET`."""
    return max(MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


@dataclass
class Program:
    """One cvxpy problem (a stage) and its parameters and variables by name."""

    problem: Any
    params: dict[str, Any]
    vars: dict[str, Any]
    solver: str


@dataclass
class Stage:
    """The outcome of solving one :class:`Program`."""

    status: Status
    solver_status: str
    value: float | None


@dataclass
class Frame:
    """The parameters every program shares, padded to ``rows``: the allowed mask, the scale factors,
    the capacity, and which rows are jobs (``live``)."""

    rows: int
    n: int
    allowed: np.ndarray
    scale: np.ndarray
    capacity: np.ndarray
    live: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """``values`` (n, ...) padded with ``fill`` to ``rows`` rows."""
        out = np.full((self.rows, *values.shape[1:]), fill, dtype=np.float64)
        out[: self.n] = values
        return out


class ConvexPolicy(SharePolicy):
    """A policy posed as cvxpy programs (one or two stages), cached per (bucket, types).

    ``solver``: a cvxpy solver name (default: the policy's choice among the installed ones, HiGHS for
    linear programs, Clarabel for conic ones). ``time_limit``: seconds per stage (None: none).
    ``solver_options``: passed to the solver as they are.
    """

    #: Whether the programs are linear (HiGHS) or conic (Clarabel).
    linear: ClassVar[bool] = True

    def __init__(
        self,
        *,
        aware: bool = True,
        solver: str | None = None,
        time_limit: float | None = None,
        solver_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(aware=aware, time_limit=time_limit)
        require_cvxpy()
        self.solver = _pick_solver(solver, self.linear)
        self.time_limit = time_limit
        self.solver_options = dict(solver_options or {})
        self._programs: dict[tuple[int, int, int], Program] = {}
        self.builds = 0  # programs built so far (tests check re-solves reuse them)

    # What subclasses provide ----------------------------------------------------------------
    def _build(self, stage: int, rows: int, k: int) -> Program:  # pragma: no cover - abstract
        raise NotImplementedError

    def _values(self, frame: Frame, problem: ShareProblem) -> None:  # pragma: no cover - abstract
        """Compute the parameter values of ``problem`` into ``frame.extra``."""
        raise NotImplementedError

    #: Stages of the program (a second stage keeps the first's optimum and breaks ties).
    stages: ClassVar[int] = 1
    #: Whether the first stage maximises (True) or minimises.
    maximize: ClassVar[bool] = True

    def _objective(self, frame: Frame, first: float) -> float:
        """The policy's value reported for a first-stage optimum ``first``."""
        return first

    def _second(self, frame: Frame, first: float) -> dict[str, Any]:
        """Parameter values of the second stage that depend on the first stage's optimum ``first``
        (default: ``first``, the bound it keeps, within :data:`STAGE_TOLERANCE`)."""
        keep = first * (1 - STAGE_TOLERANCE) if self.maximize == (first >= 0) else first * (1 + STAGE_TOLERANCE)
        return {"first": keep}

    # The solve -----------------------------------------------------------------------------
    def program(self, stage: int, rows: int, k: int) -> Program:
        """The stage's program for ``rows`` rows and ``k`` types, built on first use."""
        key = (stage, rows, k)
        found = self._programs.get(key)
        if found is None:
            found = self._build(stage, rows, k)
            found.solver = self.solver
            self._programs[key] = found
            self.builds += 1
        return found

    def _solve(self, problem: ShareProblem) -> Shares:
        n, k = problem.n, len(problem.models)
        rows = bucket(n)
        live = problem.runnable
        frame = Frame(
            rows,
            n,
            allowed=frame_pad(np.where(live[:, None], problem.allowed, False).astype(np.float64), rows),
            scale=frame_pad(problem.scale, rows),
            capacity=problem.capacity.astype(np.float64),
            live=frame_pad(live.astype(np.float64), rows),
        )
        self._values(frame, problem)
        first: float | None = None
        X: np.ndarray | None = None
        outcome = Stage(Status.UNKNOWN, "not solved", None)
        note = ""
        for stage in range(self.stages):
            prog = self.program(stage, rows, k)
            self._set(prog, frame, None if first is None else self._second(frame, first))
            outcome = self._run(prog)
            found: np.ndarray | None = None
            if outcome.status.has_solution:
                value = prog.vars["X"].value
                found, error = _clean(None if value is None else value[: problem.n], problem)
                if error:
                    outcome = Stage(Status.UNKNOWN, error, None)
            if found is None or not outcome.status.has_solution:
                log.log(
                    logging.WARNING if X is None else logging.INFO,
                    "%s: stage %d of %d ended %s",
                    self.label,
                    stage + 1,
                    self.stages,
                    outcome.solver_status,
                )
                if X is None:  # the first stage: no answer at all
                    return Shares(
                        problem, None, self.label, outcome.status, outcome.solver_status, stats=_stats(self, rows)
                    )
                # The tie-break failed: the first stage's answer stands, its status says it is not the whole program's.
                note = f"stage {stage + 1} ended {outcome.solver_status}; the answer is stage {stage}'s"
                outcome = Stage(Status.FEASIBLE, note, outcome.value)
                break
            X = found
            if stage == 0:
                first = outcome.value
        assert first is not None and X is not None
        return Shares(
            problem,
            X,
            self.label,
            outcome.status,
            outcome.solver_status,
            self._objective(frame, first),
            stats=_stats(self, rows, note),
        )

    def _set(self, prog: Program, frame: Frame, second: dict[str, Any] | None) -> None:
        p = prog.params
        p["allowed"].value = frame.allowed
        p["scale"].value = frame.scale
        p["capacity"].value = frame.capacity
        values = dict(frame.extra)
        values.update(second or {})
        for name, param in p.items():
            if name in values:
                param.value = values[name]

    def _run(self, prog: Program) -> Stage:
        import cvxpy as cp

        options = dict(self.solver_options)
        if self.time_limit is not None:
            options.setdefault("time_limit", float(self.time_limit))
        if prog.solver == cp.HIGHS:
            options.setdefault("output_flag", False)
            _quiet_highs()
        try:
            with warnings.catch_warnings():
                # cvxpy warns when a solution may be inaccurate; the status below says so, as data.
                warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
                value = prog.problem.solve(solver=prog.solver, warm_start=True, **options)
        except cp.error.SolverError as err:
            return Stage(Status.UNKNOWN, f"solver error: {err}", None)
        status = prog.problem.status
        if status == cp.OPTIMAL:
            return Stage(Status.OPTIMAL, status, float(value))
        if status == cp.OPTIMAL_INACCURATE:
            return Stage(Status.FEASIBLE, status, float(value))
        if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            return Stage(Status.INFEASIBLE, status, None)
        return Stage(Status.UNKNOWN, str(status), None)


_HIGHS_QUIET = threading.Lock()
_highs_primed = False


def _quiet_highs() -> None:
    """Construct highspy's first ``Highs`` with the process's stdout closed: the library prints its
    banner there, from C, once per process, whatever the options (cvxpy builds a fresh one per solve).
    Without it, ``optalloc ... --json`` would not print clean JSON."""
    global _highs_primed
    if _highs_primed:
        return
    with _HIGHS_QUIET:
        if _highs_primed:
            return
        import highspy

        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as sink:
                os.dup2(sink.fileno(), 1)
                highspy.Highs()  # type: ignore[no-untyped-call]
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _highs_primed = True


def frame_pad(values: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *values.shape[1:]), dtype=np.float64)
    out[: len(values)] = values
    return out


def frame_params(rows: int, k: int) -> tuple[dict[str, Any], Any, list[Any]]:
    """The shared parameters, the variable ``X`` (rows, k) and the constraints every program has:
    ``0 <= X <= allowed``, ``sum_k X[j, k] <= 1``, ``sum_j scale[j] X[j, k] <= capacity[k]``."""
    import cvxpy as cp

    params = {
        "allowed": cp.Parameter((rows, k), nonneg=True, name="allowed"),
        "scale": cp.Parameter(rows, nonneg=True, name="scale"),
        "capacity": cp.Parameter(k, nonneg=True, name="capacity"),
    }
    # X[j, k] = fraction of time job j runs on GPU type k
    X = cp.Variable((rows, k), nonneg=True, name="X")
    constraints = [
        X <= params["allowed"],  # noqa: SIM300 - only where the job may run (and only rows that are jobs)
        cp.sum(X, axis=1) <= 1,  # a job runs at most all the time
        params["scale"] @ X <= params["capacity"],  # each type's GPUs, a gang taking scale[j] of them
    ]
    return params, X, constraints


#: Constraint violations up to this much (relative) are solver noise, cleaned; beyond, the answer is refused.
NOISE = 1e-5


def _clean(X: np.ndarray | None, problem: ShareProblem) -> tuple[np.ndarray, str]:
    """The solver's X with its noise removed (tiny negatives, sums a hair above their bounds), and an
    error text when it breaks a constraint by more than :data:`NOISE`: then the answer is not used
    (status unknown), never clipped into shape."""
    allowed = problem.allowed & problem.runnable[:, None]
    if X is None or not np.isfinite(X).all():
        return np.zeros(allowed.shape), "the solver reported a solution without values"
    load = problem.scale @ np.clip(X, 0.0, None)
    if (
        (X < -NOISE).any()
        or (X - allowed > NOISE).any()
        or (X.sum(axis=1) > 1 + NOISE).any()
        or (load > problem.capacity * (1 + NOISE) + NOISE).any()
    ):
        return X, "the solver's answer breaks a constraint beyond its tolerance"
    # Below the tolerance: noise. Clip into the box, then scale rows and columns back onto their bounds.
    out = np.clip(X, 0.0, 1.0) * allowed
    out[out < 1e-9] = 0.0
    total = out.sum(axis=1)
    over = total > 1.0
    if over.any():
        out[over] /= total[over][:, None]
    load = problem.scale @ out
    cap = problem.capacity
    scale = np.where(load > cap, np.divide(cap, load, out=np.ones_like(cap), where=load > 0), 1.0)
    out = out * scale[None, :]
    return out, ""


def _stats(policy: ConvexPolicy, rows: int, note: str = "") -> MappingProxyType[str, Any]:
    out: dict[str, Any] = {"solver": policy.solver, "rows": rows, "builds": policy.builds}
    if note:
        out["note"] = note
    return MappingProxyType(out)


def _pick_solver(solver: str | None, linear: bool) -> str:
    import cvxpy as cp

    installed = cp.installed_solvers()
    if solver is not None:
        if solver not in installed:
            raise MethodUnavailable(f"cvxpy solver {solver!r} is not installed (installed: {', '.join(installed)})")
        return solver
    prefs = ("HIGHS", "CLARABEL") if linear else ("CLARABEL", "SCS")
    for name in prefs:
        if name in installed:
            return name
    raise MethodUnavailable(f"none of {', '.join(prefs)} is installed for cvxpy: pip install 'optalloc[fair]'")
