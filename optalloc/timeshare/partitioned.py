"""POP for the time-share programs (Narayanan et al., SOSP'21): ``k`` scaled copies solved in parallel.

A time-share program over ``n`` jobs and ``K`` GPU types grows with ``n K`` variables and ``n``
coupling rows; POP splits it into ``parts`` programs, each a scaled copy of the whole:

- *partition*: jobs are sorted into classes (gang size, largest first; the GPU types they may use;
  their fastest type; their priority weight; how much slower their second-best type is), inside a
  class in a seeded order of their names (so the partition depends neither on the list order nor on
  the other jobs' names), and each goes to the part that asks the fewest GPUs so far: every part holds
  about ``1/k`` of every class and the same GPU demand to within one gang. Each part gets ``1/k`` of
  every GPU type's capacity (fractions of GPUs are fine in a program of time fractions; the rounds
  make them whole);
- *solve*: each part's program is the policy itself, on its jobs and its slice
  (:meth:`ShareProblem.subset`), solved in parallel: as Ray tasks when Ray is running here (or
  ``ray_address`` is given), else in a local pool of processes kept for the policy's life (each worker
  keeps its programs built, so a re-solve a round later skips cvxpy's canonicalisation, as in one
  process), else one after the other;
- *merge*: the parts' ``X`` side by side (they share no job, and no part uses more than its slice, so
  the merged ``X`` is feasible for the whole);
- *rebalance* (default on, for the policies whose objective is a worst case: max-min and finish-time
  fairness, the makespan): parts that are not exact copies end with different optima, and the whole
  gets the worst of them. Each part's worst job is measured on the whole problem, capacity moves
  towards the parts that did worse (in proportion: a maximin grows about linearly with capacity, a
  makespan shrinks so), the parts are solved once more, and the better of the two merged answers is
  kept (on 2,048 jobs it takes max-min fairness from about 2% below the whole program to about 0.1%);
- *repair* (default on): capacity a part left idle goes to jobs of any part that can still use it
  (``sum_k X[j, k] < 1``), the highest weighted relative throughput first: no job's share goes down, so
  max-min and finish-time fairness and the makespan can only improve.

What is reported: the merged answer's ``objective`` is the policy's own objective evaluated on the
*whole* problem (:meth:`SharePolicy.value`: the whole problem's equal shares, the whole's maximum);
``stats["part_objectives"]`` are the parts' own, which are not values of the whole (a part's equal
share is its own). The status is ``feasible`` (the merged answer is not proven optimal for the whole);
a part without an answer is served by FIFO on its slice (``stats["fallback_parts"]``), never dropped.
The loss against solving the whole program is measured in ``benchmarks/timeshare_scale.py``.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
import weakref
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.core import ProblemError, Status
from optalloc.timeshare.problem import ShareProblem, Shares
from optalloc.timeshare.program import SharePolicy, _info, get_policy

log = logging.getLogger(__name__)

EXECUTORS = ("auto", "ray", "local", "serial")


def partition(problem: ShareProblem, parts: int, seed: int = 0) -> list[np.ndarray]:
    """The jobs of ``problem`` dealt into ``parts`` scaled copies (see the module docstring): a list of
    ``parts`` sorted index arrays, together every job once."""
    if not (isinstance(parts, int) and parts >= 1):
        raise ProblemError("parts", parts, "is not a number of parts >= 1")
    n = problem.n
    if n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(parts)]
    rates = problem.rates
    best = rates.max(axis=1)
    fastest = np.where(best > 0, rates.argmax(axis=1), -1)
    relative = np.divide(rates, best[:, None], out=np.zeros_like(rates), where=best[:, None] > 0)
    # how much slower the second-best type is, in quarters (jobs that gain a lot from their best type apart)
    second = np.round(4 * np.sort(relative, axis=1)[:, -2]) if rates.shape[1] > 1 else np.zeros(n)
    allowed = problem.allowed.astype(np.int64) @ (1 << np.arange(len(problem.models), dtype=np.int64))
    salt = f"{seed}:".encode()
    noise = np.fromiter((zlib.crc32(salt + name.encode()) for name in problem.jobs), dtype=np.int64, count=n)
    # Classes: the largest gangs first, then by allowed types, fastest type, weight, second-best speed;
    # inside a class by a seeded hash of the name.
    order = np.lexsort((np.arange(n), noise, second, problem.weight, fastest, allowed, -problem.scale))
    # Each job to the part with the fewest GPUs asked so far (then the fewest jobs, then the lowest index).
    load = [(0.0, 0, p) for p in range(parts)]
    heapq.heapify(load)
    part = np.empty(n, dtype=np.int64)
    scale = problem.scale.tolist()
    for j in order.tolist():
        gpus, count, p = heapq.heappop(load)
        part[j] = p
        heapq.heappush(load, (gpus + scale[j], count + 1, p))
    return [np.flatnonzero(part == p) for p in range(parts)]


class Partitioned(SharePolicy):
    """The time-share policy ``name`` solved as ``parts`` scaled copies (POP; see the module docstring).

    ``executor``: ``auto`` (Ray when running here or ``ray_address`` is given, else a local process
    pool when this process may use more than one CPU, else serial), ``ray``, ``local`` or ``serial``.
    ``seed``: of the partition. ``repair``: give capacity the parts left idle to jobs that can use it.
    ``rebalance``: a second pass with capacity moved between the parts (policies whose objective is a
    worst case: max-min and finish-time fairness, the makespan).
    ``solver``, ``time_limit`` (per part and stage), ``solver_options``: the inner policy's. Call
    :meth:`close` (or use it as a context manager) to stop a local pool before the policy is collected.
    """

    def __init__(
        self,
        name: str,
        *,
        parts: int = 8,
        aware: bool = True,
        executor: str = "auto",
        ray_address: str | None = None,
        seed: int = 0,
        repair: bool = True,
        rebalance: bool = True,
        solver: str | None = None,
        time_limit: float | None = None,
        solver_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(aware=aware, time_limit=time_limit)
        if not (isinstance(parts, int) and not isinstance(parts, bool) and parts >= 1):
            raise ProblemError("parts", parts, "is not a number of parts >= 1")
        if executor not in EXECUTORS:
            raise ProblemError("executor", executor, f"is not one of {', '.join(EXECUTORS)}")
        self.info = _info(name)
        self.name = name  # type: ignore[misc]  # the inner policy's name: the answers are labelled as its
        self.parts = parts
        self.executor = executor
        self.ray_address = ray_address
        self.seed = int(seed)
        self.repair = bool(repair)
        self.rebalance = bool(rebalance)
        # The parts' policy: posed on what this one is given (already pooled when agnostic).
        self.inner: dict[str, Any] = {"solver": solver, "time_limit": time_limit, "solver_options": solver_options}
        self._local: SharePolicy | None = None  # the inner policy when the parts run here
        self._pool: Executor | None = None
        self._finalizer: weakref.finalize | None = None
        self.where = ""  # where the last parts ran: ray, local or serial

    def dependencies(self) -> tuple[str, ...]:
        return self.info.factory.depends

    def close(self) -> None:
        """Stop the local pool of worker processes (if one was started)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._pool = None

    # The solve -----------------------------------------------------------------------------------
    def _solve(self, problem: ShareProblem) -> Shares:
        started = time.perf_counter()
        factory = self.info.factory
        parts = max(1, min(self.parts, problem.n))
        groups = [g for g in partition(problem, parts, self.seed) if len(g)]
        partition_time = time.perf_counter() - started
        runner, where = self._runner(len(groups))
        self.where = where
        t0 = time.perf_counter()
        share = np.full(len(groups), 1.0 / len(groups))
        X, run = self._pass(problem, groups, share, runner)
        value = factory.value(problem, X)
        values = [value]
        if self.rebalance and factory.balance and len(groups) > 1 and value is not None:
            # Each part's worst job measured on the whole problem; capacity moves towards the parts
            # whose worst job is worse off, in proportion (the value of a maximin grows about linearly
            # with capacity, a makespan shrinks so), and the better of the two answers is kept.
            worst = np.array([factory.value(problem, X, rows=g) for g in groups], dtype=np.float64)
            if np.isfinite(worst).all() and (worst > 0).all():
                ratio = worst.mean() / worst if factory.balance > 0 else worst / worst.mean()
                moved = share * np.clip(ratio, 0.5, 2.0)
                moved /= moved.sum()
                X2, run2 = self._pass(problem, groups, moved, runner)
                value2 = factory.value(problem, X2)
                values.append(value2)
                if value2 is not None and (value2 - value) * factory.balance > 0:
                    X, run, value, share = X2, run2, value2, moved
        parts_time = time.perf_counter() - t0
        repaired = _repair(problem, X) if self.repair else 0.0
        if repaired:
            value = factory.value(problem, X)
        stats = {
            "parts": len(groups),
            "executor": where,
            "passes": len(values),
            "pass_values": values,
            "capacity_shares": [round(float(x), 5) for x in share],
            "part_statuses": run["statuses"],
            "part_objectives": run["objectives"],
            "part_solve_times": run["times"],
            "fallback_parts": run["fallback"],
            "repaired_gpus": round(repaired, 4),
            "partition_time": round(partition_time, 4),
            "parts_time": round(parts_time, 4),
        }
        fallback = run["fallback"]
        note = f"POP-{len(groups)} ({where})" + (f"; FIFO stood in for parts {fallback}" if fallback else "")
        return Shares(problem, X, self.label, Status.FEASIBLE, note, value, stats=MappingProxyType(stats))

    def _pass(
        self,
        problem: ShareProblem,
        groups: list[np.ndarray],
        share: np.ndarray,
        runner: Callable[[list[ShareProblem]], list[_Answer]],
    ) -> tuple[np.ndarray, dict[str, list[Any]]]:
        """One solve of every part, part ``p`` on ``share[p]`` of every type's capacity; the merged X."""
        subs = [problem.subset(g, problem.capacity * float(f)) for g, f in zip(groups, share, strict=True)]
        answers = runner(subs)
        X = np.zeros((problem.n, len(problem.models)))
        fallback: list[int] = []
        for p, (idx, sub, answer) in enumerate(zip(groups, subs, answers, strict=True)):
            part_X = answer[0]
            if part_X is None:  # no answer for this part: FIFO on its slice stands in
                from optalloc.timeshare.fifo import Fifo

                part_X = Fifo().solve(sub).X
                fallback.append(p)
            X[idx] = part_X
        run: dict[str, list[Any]] = {
            "statuses": [a[1] for a in answers],
            "objectives": [a[3] for a in answers],
            "times": [round(a[4], 4) for a in answers],
            "fallback": fallback,
        }
        return X, run

    def _runner(self, count: int) -> tuple[Callable[[list[ShareProblem]], list[_Answer]], str]:
        kind = self.executor
        if kind == "auto":
            kind = "ray" if _ray_ready(self.ray_address) else ("local" if count > 1 and _cpus() > 1 else "serial")
        spec = (self.info.name, tuple(sorted((k, _freeze(v)) for k, v in self.inner.items())))
        if kind == "ray":
            return (lambda subs: _run_ray(self.ray_address, spec, subs)), "ray"
        if kind == "local" and count > 1:
            pool = self._local_pool(count)
            return (lambda subs: list(pool.map(_solve_spec, [spec] * len(subs), subs))), "local"
        if self._local is None:
            self._local = get_policy(self.info.name, **self.inner)
        policy = self._local
        return (lambda subs: [_answer(policy.solve(s)) for s in subs]), "serial"

    def _local_pool(self, count: int) -> Executor:
        workers = max(1, min(count, _cpus()))
        if self._pool is None or getattr(self._pool, "_max_workers", workers) < workers:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.close()
            # Forked (the workers start with the modules already imported, and no script is run again);
            # each restarts HiGHS's thread pool, which did not survive the fork.
            context = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start)
            self._pool = pool
            self._finalizer = weakref.finalize(self, pool.shutdown, wait=True, cancel_futures=True)
        return self._pool


# What a part sends back: X (None: no answer), status, solver status, objective, solve time.
_Answer = tuple[np.ndarray | None, str, str, float | None, float]


def _answer(shares: Shares) -> _Answer:
    X = shares.X if shares.ok else None
    return X, shares.status.value, shares.solver_status, shares.objective, shares.solve_time


#: The inner policies of this worker process, by spec: a worker keeps its programs between solves.
_WORKER_POLICIES: dict[tuple[Any, ...], SharePolicy] = {}


def _solve_spec(spec: tuple[str, tuple[tuple[str, Any], ...]], problem: ShareProblem) -> _Answer:
    """Solve one part in a worker (a process of the local pool, or a Ray task)."""
    policy = _WORKER_POLICIES.get(spec)
    if policy is None:
        name, options = spec
        policy = get_policy(name, **{k: _thaw(v) for k, v in options})
        _WORKER_POLICIES[spec] = policy
    return _answer(policy.solve(problem))


def _worker_start() -> None:
    """A forked worker of the local pool: start HiGHS's thread pool afresh if the parent had one."""
    import sys

    core = sys.modules.get("highspy._core")
    if core is not None:
        core._Highs.resetGlobalScheduler(True)


def _freeze(value: Any) -> Any:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _thaw(value: Any) -> Any:
    return dict(value) if isinstance(value, tuple) else value


def _repair(problem: ShareProblem, X: np.ndarray) -> float:
    """Give each type's idle capacity to jobs that can use more time (``sum_k X[j, k] < 1``), the
    highest weighted relative throughput first; ``X`` is changed in place. Returns the GPUs handed out."""
    from optalloc.timeshare.max_min_fairness import gain

    value = gain(problem)
    live = problem.runnable
    given = 0.0
    for k in range(len(problem.models)):
        idle = float(problem.capacity[k] - problem.scale @ X[:, k])
        if idle <= 1e-9:
            continue
        slack = np.where(live & problem.allowed[:, k], 1.0 - X.sum(axis=1), 0.0)
        cand = np.flatnonzero((slack > 1e-9) & (value[:, k] > 0))
        if not len(cand):
            continue
        cand = cand[np.argsort(-value[cand, k], kind="stable")]
        need = problem.scale[cand] * slack[cand]  # GPUs each would take to run all the time
        before = np.concatenate([[0.0], np.cumsum(need)[:-1]])
        take = np.clip((idle - before) / problem.scale[cand], 0.0, slack[cand])
        X[cand, k] += take
        given += float(problem.scale[cand] @ take)
    return given


def _cpus() -> int:
    """The CPUs this process may use (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _ray_ready(address: str | None) -> bool:
    """Ray is used by default when it is installed and either running here or an address is given."""
    try:
        import ray
    except ImportError:
        return False
    return bool(address) or bool(ray.is_initialized())


def _run_ray(address: str | None, spec: tuple[Any, ...], subs: Sequence[ShareProblem]) -> list[_Answer]:
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
    task = ray.remote(_solve_spec)
    return list(ray.get([task.remote(spec, s) for s in subs]))
