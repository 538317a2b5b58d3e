"""The adaptive loop driven by a time-share policy: rounds of verified placements, observed throughputs in.

:class:`TimeshareLoop` is to :mod:`optalloc.timeshare` what :func:`~optalloc.adaptive.controller.step`
is to the packing engines: a driver (the simulator, a production loop next to a cluster) owns the clock
and the world, and at each step passes what happened (the loop's :class:`Event` s) and what it measured
(:class:`Progress` per running job: the throughput it observes on the GPU type the job runs on, and
the work left), and gets back a :class:`Plan` of starts, preemptions and migrations with the round's
verified allocation. At a round boundary (``round_boundary=True``: every ``rounds.length`` seconds) the
policy is re-solved and the round may preempt; between rounds (after arrivals and completions) it is
re-solved when the set of jobs changed and idle GPUs are filled without preempting anyone.

Observed throughputs replace the profiled ones: a policy posed on what jobs really achieve on each
GPU type (Gavel measures them too). The loop keeps a :class:`~optalloc.timeshare.TimeshareScheduler`:
unlike the packing controller's immutable state, it is one mutable object per loop (the shares'
credits and the re-used convex programs live in it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from optalloc.adaptive.drift import Trigger
from optalloc.adaptive.plan import Action, ActionKind, Event, EventKind, FallbackReason, Plan
from optalloc.core import Job, Node, ProblemError, Status
from optalloc.timeshare import RoundConfig, SharePolicy, TimeshareScheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """What is measured of a running job: ``rate``, its throughput (work per second) on the GPU type it
    runs on now; ``remaining``, its work left. None = not measured."""

    rate: float | None = None
    remaining: float | None = None


class TimeshareLoop:
    """A time-share ``policy`` (name or :class:`~optalloc.timeshare.SharePolicy`) over ``nodes``.

    ``throughputs(job)``: the profiled throughput of a job per GPU model (work per second on its GPUs;
    0 or absent: it cannot run there), asked once on arrival. ``work(job)``: its work (default 1).
    ``rounds``: the round mechanism's knobs. ``options`` go to the scheduler (``resolve_every_round``,
    ``weight``) and the policy (``solver``, ``time_limit``).
    """

    def __init__(
        self,
        policy: str | SharePolicy,
        nodes: Sequence[Node],
        *,
        throughputs: Callable[[Job], Mapping[str, float]],
        work: Callable[[Job], float] | None = None,
        rounds: RoundConfig | None = None,
        **options: object,
    ) -> None:
        self.scheduler = TimeshareScheduler(policy, nodes, rounds=rounds, **options)  # type: ignore[arg-type]
        self.throughputs = throughputs
        self.work = work
        self.steps = 0

    @property
    def running(self) -> Mapping[str, tuple]:
        return self.scheduler.running

    @property
    def waiting(self) -> int:
        return len(self.scheduler.jobs) - len(self.scheduler.running)

    def step(
        self,
        now: float,
        events: Iterable[Event] = (),
        *,
        progress: Mapping[str, Progress] | None = None,
        round_boundary: bool = True,
    ) -> Plan:
        """One step at ``now``: apply ``events``, fold in ``progress``, then a round (or an admission)."""
        sched = self.scheduler
        forced: list[Action] = []
        for event in events:
            self._apply(event, now, forced)
        for name, seen in (progress or {}).items():
            model = sched.on.get(name)
            rate = seen.rate if model is not None else None
            if rate is not None or seen.remaining is not None:
                sched.observe(name, model=model, rate=rate, remaining=seen.remaining)
        before = dict(sched.running)
        solves, spent = sched.solves, sched.solve_time
        result = sched.step(now, full=round_boundary)
        self.steps += 1
        actions = list(forced)
        placed = result.placements()
        what = "round" if round_boundary else "admission"
        for name in result.stopped:
            actions.append(Action(ActionKind.PREEMPT, name, f"time share: not in this {what}", (), before[name]))
        for name in result.moved:
            actions.append(
                Action(ActionKind.MIGRATE, name, f"time share: other GPUs this {what}", placed[name], before[name])
            )
        for name in result.started:
            actions.append(Action(ActionKind.START, name, f"time share: runs this {what}", placed[name]))
        resolved = sched.solves > solves
        answer = sched.answer
        fallback: FallbackReason | None = None
        error = ""
        if resolved and answer is not None and not answer.ok:
            infeasible = answer.status is Status.INFEASIBLE
            fallback = FallbackReason.INFEASIBLE if infeasible else FallbackReason.NO_ANSWER
            error = f"{answer.policy}: {answer.status.value} ({answer.solver_status}); FIFO stood in"
        trigger = Trigger(what, f"{len(sched.jobs)} jobs share the cluster")
        return Plan(
            now,
            result.allocation,
            tuple(actions),
            trigger,
            method=sched.policy.label,
            fallback=fallback,
            solve_time=(sched.solve_time - spent) if resolved else 0.0,
            error=error,
        )

    def _apply(self, event: Event, now: float, forced: list[Action]) -> None:
        sched = self.scheduler
        if not isinstance(event, Event):
            raise ProblemError("events", event, "is not an Event")
        if event.kind is EventKind.ARRIVAL and event.job is not None:
            job = event.job
            work = 1.0 if self.work is None else float(self.work(job))
            sched.arrive(job, self.throughputs(job), now=now, work=work)
        elif event.kind is EventKind.COMPLETION:
            sched.complete(event.name)
        elif event.kind is EventKind.NODE_LOST:
            before = dict(sched.running)
            for name in sched.node_lost(event.name):
                reason = f"node {event.name!r} was lost; the job waits again"
                forced.append(Action(ActionKind.PREEMPT, name, reason, (), before[name]))
        elif event.kind is EventKind.NODE_ADDED and event.node is not None:
            sched.node_added(event.node)
        else:
            log.warning("ignored malformed event %r", event)
