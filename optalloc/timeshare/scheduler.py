"""A time-share scheduler: a policy, its shares and the rounds, fed by a driver.

The driver (the simulator, a production loop) owns the clock and the world and tells the scheduler
what happened -- :meth:`TimeshareScheduler.arrive`, :meth:`complete`, :meth:`node_lost`,
:meth:`node_added` -- and what it measured -- :meth:`observe`: a job's throughput on a GPU type
(steps per second as a fraction of its work, or any unit consistent with ``work``) and its remaining
work. At every round boundary it calls :meth:`step` with ``full=True`` (re-solve, then a full round
that may preempt); between rounds, after events, with ``full=False`` (re-solve when the set of jobs
changed, then fill idle GPUs without preempting). Each step returns a verified
:class:`~optalloc.timeshare.rounds.RoundResult`: what runs now, and what started, moved and stopped.

Between observations the scheduler advances its estimate of each running job's remaining work at the
throughput it knows (the finish-time, makespan and SRTF policies use it); an observed ``remaining``
replaces the estimate.

When a policy has no answer (its status says why: a solver time limit, numerical trouble) the step
follows FIFO's shares for that round; ``fallbacks`` counts it, ``statuses`` counts every status, and
the result's ``shares`` is the answer that was followed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from optalloc.core import Job, Node, Placement, ProblemError
from optalloc.timeshare.problem import ShareProblem, Shares
from optalloc.timeshare.program import SharePolicy, get_policy
from optalloc.timeshare.rounds import RoundConfig, RoundResult, Rounds

log = logging.getLogger(__name__)

#: The estimated remaining work of a job that has not finished never drops below this part of its work.
MIN_REMAINING = 1e-3


def priority_weight(job: Job) -> float:
    """Default priority weight alpha of a job: ``1 + priority / 100`` (the inverse of the Gavel reader's
    ``priority = round(100 (weight - 1))``; priority 0 is weight 1), at least 0.01."""
    return max(0.01, 1.0 + job.priority / 100.0)


@dataclass
class _Tracked:
    job: Job
    rates: dict[str, float]  # GPU model -> throughput (work per second) on the job's GPUs
    work: float
    remaining: float
    arrived: float
    gpus: float = field(init=False)

    def __post_init__(self) -> None:
        self.gpus = self.job.gpu_demand * self.job.replicas / 1000.0


class TimeshareScheduler:
    """``policy`` (a name of :func:`~optalloc.timeshare.get_policy`, ``-agnostic`` included, or a
    :class:`SharePolicy`) over ``nodes``, realised by rounds (``rounds``: :class:`RoundConfig`).

    ``resolve_every_round``: re-solve at every round boundary (default; otherwise only when jobs come
    or go). ``weight``: the priority weight of a job (default :func:`priority_weight`).
    ``policy_options`` go to :func:`get_policy` (``solver``, ``time_limit``, ...).
    """

    def __init__(
        self,
        policy: str | SharePolicy,
        nodes: Sequence[Node],
        *,
        rounds: RoundConfig | None = None,
        resolve_every_round: bool = True,
        weight: Callable[[Job], float] = priority_weight,
        **policy_options: object,
    ) -> None:
        self.policy = policy if isinstance(policy, SharePolicy) else get_policy(policy, **policy_options)  # type: ignore[arg-type]
        self.rounds = Rounds(rounds)
        self.resolve_every_round = resolve_every_round
        self.weight = weight
        self.nodes: dict[str, Node] = {}
        self.down: set[str] = set()
        for node in nodes:
            self.node_added(node)
        self.jobs: dict[str, _Tracked] = {}
        self.running: dict[str, tuple[Placement, ...]] = {}
        self.on: dict[str, str] = {}  # GPU model each running job runs on
        self.shares: Shares | None = None  # the shares the rounds follow
        self.answer: Shares | None = None  # the policy's own answer at the last solve (status as data)
        self._changed = True
        self._last: float | None = None
        self._round_start: float | None = None
        # Counters.
        self.solves = 0
        self.fallbacks = 0
        self.solve_time = 0.0
        self.statuses: dict[str, int] = {}

    # The world -------------------------------------------------------------------------------
    def arrive(self, job: Job, throughput: Mapping[str, float], *, now: float, work: float = 1.0) -> None:
        """Job ``job`` joins, with its throughput per GPU model (0 or absent: cannot run there) and its
        ``work`` (in the throughput's unit times seconds)."""
        if job.name in self.jobs:
            raise ProblemError("job", job.name, "has already arrived")
        rates = {}
        for model, rate in throughput.items():
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0):
                raise ProblemError(f"throughput.{model}", rate, "is not a rate >= 0")
            rates[str(model)] = float(rate)
        if not (isinstance(work, int | float) and work > 0):
            raise ProblemError("work", work, "is not positive")
        self.jobs[job.name] = _Tracked(job, rates, float(work), float(work), float(now))
        self._changed = True

    def complete(self, name: str) -> None:
        """Job ``name`` finished (or was cancelled): its GPUs are free."""
        if self.jobs.pop(name, None) is None:
            log.debug("completion of unknown job %r ignored", name)
            return
        self.running.pop(name, None)
        self.on.pop(name, None)
        self.rounds.forget(name)
        self._changed = True

    def node_lost(self, name: str) -> list[str]:
        """Node ``name`` is down; returns the jobs that ran on it (they stopped)."""
        self.down.add(name)
        hit = [j for j, ps in self.running.items() if any(p.node == name for p in ps)]
        for j in hit:
            del self.running[j]
            self.on.pop(j, None)
        self._changed = True
        return hit

    def node_added(self, node: Node) -> None:
        self.nodes[node.name] = node
        self.down.discard(node.name)
        self._changed = True

    def observe(
        self, name: str, *, model: str | None = None, rate: float | None = None, remaining: float | None = None
    ) -> None:
        """A measurement of job ``name``: its throughput on ``model`` and/or its remaining work."""
        tracked = self.jobs.get(name)
        if tracked is None:
            return
        if rate is not None:
            if model is None or not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0):
                raise ProblemError("rate", rate, "is not a rate >= 0 on a named GPU model")
            tracked.rates[model] = float(rate)
        if remaining is not None:
            if not (isinstance(remaining, int | float) and remaining >= 0):
                raise ProblemError("remaining", remaining, "is not a work amount >= 0")
            tracked.remaining = min(float(remaining), tracked.work)

    # The step --------------------------------------------------------------------------------
    def step(self, now: float, *, full: bool = True) -> RoundResult:
        """A round boundary (``full``) or an admission between rounds, at ``now`` (see the module doc)."""
        self._advance(now)
        nodes = [n for name, n in self.nodes.items() if name not in self.down]
        if (full and self.resolve_every_round) or self._changed or self.shares is None:
            self._resolve(now, nodes)
        if full:
            self._round_start = now
        order = sorted(self.jobs, key=lambda n: (self.jobs[n].arrived, n))
        jobs = [self.jobs[n].job for n in order]
        length = self.rounds.config.length
        fraction = 1.0 if full else self._left_in_round(now) / length
        where = {n: [m for m, r in self.jobs[n].rates.items() if r > 0] for n in order}
        result = self.rounds.assign(
            now, nodes, jobs, self.shares, self.running, full=full, fraction=fraction, order=order, allowed=where
        )
        self.running = result.placements()
        self.on = dict(result.model)
        return result

    def problem(self, now: float, nodes: Sequence[Node] | None = None) -> ShareProblem:
        """The :class:`ShareProblem` of the jobs now (the nodes up by default)."""
        up = [n for name, n in self.nodes.items() if name not in self.down] if nodes is None else list(nodes)
        models = sorted({n.gpu_model for n in up if n.gpus and n.gpu_model})
        names = sorted(self.jobs, key=lambda n: (self.jobs[n].arrived, n))
        k = len(models)
        rate = np.zeros((len(names), k))
        allowed = np.zeros((len(names), k), dtype=bool)
        biggest = {m: max((n.gpus for n in up if n.gpu_model == m), default=0) for m in models}
        for i, name in enumerate(names):
            tracked = self.jobs[name]
            job = tracked.job
            per_node = job.gpus_used * (job.replicas if job.placement.value == "single-node" else 1)
            for c, m in enumerate(models):
                rate[i, c] = tracked.rates.get(m, 0.0)
                allowed[i, c] = (not job.gpu_models or m in job.gpu_models) and biggest[m] >= per_node
        capacity = np.array([sum(n.gpus for n in up if n.gpu_model == m) for m in models], dtype=np.float64)
        tracked_list = [self.jobs[n] for n in names]
        return ShareProblem.of(
            names,
            models or ["none"],
            rate if k else np.zeros((len(names), 1)),
            capacity if k else [0.0],
            scale=[max(t.gpus, 1e-3) for t in tracked_list],
            allowed=allowed if k else None,
            weight=[self.weight(t.job) for t in tracked_list],
            remaining=[t.remaining for t in tracked_list],
            work=[t.work for t in tracked_list],
            elapsed=[max(0.0, now - t.arrived) for t in tracked_list],
            arrival=[t.arrived for t in tracked_list],
        )

    # Internals ------------------------------------------------------------------------------
    def _resolve(self, now: float, nodes: Sequence[Node]) -> None:
        problem = self.problem(now, nodes)
        started = time.perf_counter()
        shares = self.policy.solve(problem)
        self.answer = shares
        self.solve_time += time.perf_counter() - started
        self.solves += 1
        self.statuses[shares.status.value] = self.statuses.get(shares.status.value, 0) + 1
        if not shares.ok:
            self.fallbacks += 1
            log.warning(
                "%s: no shares at %.0f (%s); following the previous ones", shares.policy, now, shares.solver_status
            )
            shares = self._fallback(problem)
        self.shares = shares
        self._changed = False

    def _fallback(self, problem: ShareProblem) -> Shares:
        """FIFO's shares (never fails), with the policy's awareness."""
        from optalloc.timeshare.fifo import Fifo

        return Fifo(aware=self.policy.aware).solve(problem)

    def _advance(self, now: float) -> None:
        """Advance each running job's remaining work at its known throughput since the last step."""
        last = self._last
        self._last = now
        if last is None or now <= last:
            return
        dt = now - last
        for name, model in self.on.items():
            tracked = self.jobs.get(name)
            if tracked is not None:
                # An estimate: never below a sliver while the job runs (it is not done until it says so).
                floor = MIN_REMAINING * tracked.work
                tracked.remaining = max(floor, tracked.remaining - tracked.rates.get(model, 0.0) * dt)

    def _left_in_round(self, now: float) -> float:
        length = self.rounds.config.length
        start = self._round_start
        if start is None:
            return length
        return max(0.0, min(length, start + length - now))
