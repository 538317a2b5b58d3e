"""The time-share engine of the simulator: a time-share policy's rounds, driven through the loop's step.

A time-share policy (``max-min-fairness``, ``finish-time-fairness``, ... and their ``-agnostic``
variants: :mod:`optalloc.timeshare`) decides what runs round by round, so it is not a configuration of
the packing controller: the simulator drives :class:`~optalloc.adaptive.timeshare.TimeshareLoop`
instead, with what a production driver would give it:

- the profiled throughputs: job ``j`` progresses at ``1 / runtime[j, type]`` of its work per second on
  a GPU type (the scenario's runtimes; 0 where it cannot run), its work is 1;
- at every step, the observed progress of the running jobs (their work left, from the simulator's
  books, and their rate on the type they run on);
- a round boundary every ``round_length`` seconds (Gavel's 360 s by default; the simulator ticks at
  least that often for a time-share policy): the step at the first tick or event at or after the
  boundary re-solves and may preempt; the steps in between (arrivals, completions) re-solve when the
  set of jobs changed and fill idle GPUs without preempting.

Every round's allocation is verified inside the round mechanism (:mod:`optalloc.timeshare.rounds`),
and with ``SimConfig(verify=True)`` the simulator checks the running allocation and its books after
every step. The simulator carries out the plan's starts, preemptions and migrations as for any policy,
so a job that changes GPUs pays the restart penalty, and metrics are computed the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from optalloc.adaptive.plan import Event, Plan
from optalloc.adaptive.timeshare import Progress, TimeshareLoop
from optalloc.core import Allocation, Job, Placement, Problem, Status, verify
from optalloc.sim.policies import Policy
from optalloc.sim.workloads import ANY_MODEL, Scenario
from optalloc.timeshare import RoundConfig


class TimeshareEngine:
    """The time-share policy of ``policy`` on ``scenario``: ``step(t, events) -> Plan``.
    ``remaining(j, t)``: the work left of job index ``j`` at ``t`` (the simulator's books: what a
    production driver measures)."""

    def __init__(
        self, scenario: Scenario, policy: Policy, remaining: Callable[[int, float], float], *, seed: int = 0
    ) -> None:
        spec = policy.timeshare
        if spec is None:
            raise ValueError(f"{policy.name!r} is not a time-share policy")
        self.scenario = scenario
        self.round_length = spec.round_length
        self.models = sorted({n.gpu_model for n in scenario.nodes if n.gpus and n.gpu_model})
        self.rates = rates_of(scenario, self.models)
        self.job_index = scenario.job_index
        self.remaining = remaining
        rounds = RoundConfig(length=self.round_length, seed=seed, verify=True)
        options: dict[str, object] = {"time_limit": spec.time_limit}
        if spec.parts > 1:
            options.update(parts=spec.parts, seed=seed)
        self.loop = TimeshareLoop(spec.name, scenario.nodes, throughputs=self._throughputs, rounds=rounds, **options)
        self.next_round: float | None = None
        self.resolves = 0
        self._empty = Plan(0.0, Allocation(status=Status.FEASIBLE))

    def _throughputs(self, job: Job) -> Mapping[str, float]:
        row = self.rates[self.job_index[job.name]]
        return {m: float(r) for m, r in zip(self.models, row.tolist(), strict=True) if r > 0}

    def step(self, now: float, events: Sequence[Event]) -> Plan:
        """One step: a round when one is due, else an admission after events (nothing without)."""
        boundary = self.next_round is None or now >= self.next_round - 1e-9
        if not boundary and not events:
            return self._empty
        if boundary and not events and not self.loop.scheduler.jobs:
            return self._empty
        if boundary:
            base = now if self.next_round is None else self.next_round
            while base <= now + 1e-9:
                base += self.round_length
            self.next_round = base
        progress = {
            name: Progress(rate=self._rate(name), remaining=self.remaining(self.job_index[name], now))
            for name in self.loop.scheduler.running
        }
        solves = self.loop.scheduler.solves
        plan = self.loop.step(now, events, progress=progress, round_boundary=boundary)
        self.resolves += self.loop.scheduler.solves - solves
        return plan

    def _rate(self, name: str) -> float | None:
        model = self.loop.scheduler.on.get(name)
        if model is None or model not in self.models:
            return None
        return float(self.rates[self.job_index[name], self.models.index(model)])

    @property
    def running(self) -> dict[int, tuple[Placement, ...]]:
        return {self.job_index[n]: ps for n, ps in self.loop.scheduler.running.items()}

    @property
    def queued(self) -> int:
        return self.loop.waiting

    def check(self, up: np.ndarray) -> list[str]:
        """Violations of the running allocation (``optalloc.verify`` on the running jobs and the nodes up)."""
        problem = self.scenario.problem
        running = self.loop.scheduler.running
        nodes = tuple(n for k, n in enumerate(problem.nodes) if up[k])
        jobs = tuple(job for job in problem.jobs if job.name in running)
        window = Problem(nodes, jobs, gpu_models=problem.gpu_models)
        placements = tuple(p for ps in running.values() for p in ps)
        return [str(v) for v in verify(window, Allocation(placements, status=Status.FEASIBLE))]


def rates_of(scenario: Scenario, models: Sequence[str]) -> np.ndarray:
    """float64 (jobs, models): the work per second of each job on each GPU model (``1 / runtime``; 0
    where it cannot run), from the scenario's runtime columns (``"*"`` for a model without its own)."""
    columns = {m: k for k, m in enumerate(scenario.models)}
    runtime = scenario.runtime
    out = np.zeros((len(scenario.jobs), len(models)))
    for c, model in enumerate(models):
        col = columns.get(model, columns.get(ANY_MODEL))
        if col is None:
            continue
        t = runtime[:, col]
        ok = np.isfinite(t) & (t > 0)
        out[ok, c] = 1.0 / t[ok]
    return out
