"""A re-solve and an admission: the window as a problem, the method's answer -- or, when it has none,
the fallback heuristic's, counted and said --, then the migration cap and the actions
(:mod:`optalloc.adaptive.controller.commit`).

Only what is expected turns into a fallback: the method answered without a solution (status
``unknown``: nothing within its time limit; ``infeasible``), or it is unavailable here
(:class:`~optalloc.core.MethodUnavailable`: an optional module is missing). Any other exception of an
engine is a bug and propagates to the caller of the step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from types import MappingProxyType

from optalloc.adaptive import drift as drift_mod
from optalloc.adaptive import rightsize
from optalloc.adaptive import tiers as tiers_mod
from optalloc.adaptive.controller.commit import cap_disruptions, commit
from optalloc.adaptive.controller.config import ControllerConfig
from optalloc.adaptive.controller.state import ControllerState
from optalloc.adaptive.drift import Trigger
from optalloc.adaptive.plan import Action, ActionKind, FallbackReason, Plan
from optalloc.adaptive.rightsize import RightSizing
from optalloc.core import Allocation, Job, MethodUnavailable, Problem, ProblemError, Reason, Status, Unplaced
from optalloc.core.options import SolveOptions
from optalloc.models.horizon import HorizonConfig, HorizonPlan, plan_horizon

log = logging.getLogger(__name__)

#: Time limit of the fallback heuristic's solves (``SolveOptions``' default; a heuristic answers in
#: milliseconds to seconds on the largest windows and keeps what it placed when the limit stops it).
FALLBACK_TIME_LIMIT = 10.0


@dataclass(frozen=True)
class Solved:
    """The outcome of one solve of the window: the ``answer`` adopted, the ``method`` whose answer it
    is, and when the fallback heuristic stood in, ``fallback`` (why) and ``error`` (what the method did)."""

    answer: Allocation
    method: str
    fallback: FallbackReason | None = None
    error: str = ""


#: The work after a re-solve's solver varies from step to step: the next step keeps back this many
#: times what it took last time.
AFTER_SOLVE_MARGIN = 1.5


def heuristic_options(cfg: ControllerConfig, round_: int = 0) -> SolveOptions:
    """The options of the fallback heuristic's solves: nothing moves, the heuristics' queue order."""
    return cfg.options.replace(
        time_limit=FALLBACK_TIME_LIMIT, allow_migration=False, order=cfg.queue_order, round=round_
    )


def window(st: ControllerState) -> list[str]:
    """The queued jobs one solve considers: by priority (highest first; tiered with ``duration_tiers``),
    then arrival."""
    if len(st.queue) <= st.config.max_window:
        return list(st.queue)
    thresholds = st.config.duration_tiers
    levels = len(thresholds) + 1

    def rank(n: str) -> tuple[int, float]:
        job = st.jobs[n]
        tier = tiers_mod.tier_of(job.duration, thresholds) if thresholds else 0
        return (-(job.priority * levels + levels - 1 - tier), job.arrival)

    ranked = sorted(st.queue, key=rank)
    chosen = set(ranked[: st.config.max_window])
    return [n for n in st.queue if n in chosen]


def resolve(st: ControllerState, now: float, trigger: Trigger, forced: list[Action]) -> tuple[ControllerState, Plan]:
    """Re-solve the window (right-sizing first, when on); running jobs may move per ``allow_migration``."""
    cfg = st.config
    log.info("re-solve at %.1f: %s", now, trigger)
    actions = list(forced)
    resized: dict[str, Job] = {}
    if cfg.right_size is not None:
        st, resize_actions, resized = _right_size(st, cfg.right_size, trigger)
        actions += resize_actions
    st, plan = _place(st, now, trigger, actions, allow_migration=cfg.allow_migration, horizon=cfg.horizon)
    plan = replace(plan, resized=MappingProxyType(resized))
    st = replace(st, drift=drift_mod.after_resolve(st.drift, now, cfg.drift), resolves=st.resolves + 1)
    return st, plan


def admit(st: ControllerState, now: float, forced: list[Action]) -> tuple[ControllerState, Plan]:
    """Place waiting jobs around the running ones, moving nobody (the fallback heuristic, or the method
    with ``admit_exact``)."""
    trigger = Trigger("admit", f"{len(st.queue)} jobs waiting")
    cfg = st.config
    return _place(st, now, trigger, list(forced), allow_migration=False, horizon=cfg.horizon, exact=cfg.admit_exact)


def _place(
    st: ControllerState,
    now: float,
    trigger: Trigger,
    actions: list[Action],
    *,
    allow_migration: bool,
    horizon: HorizonConfig | None,
    exact: bool = True,
) -> tuple[ControllerState, Plan]:
    """Solve the window and turn the answer into actions; the state's allocation becomes the answer."""
    cfg = st.config
    started_at = time.perf_counter()
    queued = window(st)
    hplan: HorizonPlan | None = None
    try:
        problem = st.solve_view(queued, now)
    except ProblemError as err:  # a job the cluster cannot describe: keep everything as it is
        log.error("cannot build the window problem: %s", err)
        plan = Plan(now, st.allocation, tuple(actions), trigger, stale=st.stale, error=str(err))
        return replace(st, dirty=False), plan
    candidates = queued
    if horizon is not None and queued:
        hplan = plan_horizon(
            problem,
            remaining=st.remaining(now),
            config=horizon,
            time_limit=max(0.01, min(horizon.time_limit, cfg.budget * cfg.horizon_share)),
        )
        # Commit only what starts now; jobs no single node group could hold are tried as they come.
        chosen = set(hplan.start_now) | set(hplan.ungrouped)
        candidates = [n for n in queued if n in chosen]
        problem = st.solve_view(candidates, now)
    if not candidates and not allow_migration:  # the horizon starts nothing now and nothing may move
        plan = Plan(now, st.allocation, tuple(actions), trigger, stale=st.stale, horizon=hplan)
        return replace(st, dirty=False), plan
    # The solver gets the budget less what the step took so far and what its work after the solver took
    # last time (with a margin; at most half the budget): the whole step keeps its budget.
    keep = min(AFTER_SOLVE_MARGIN * st.after_solve, 0.5 * cfg.budget)
    budget_left = max(0.01, cfg.budget - (time.perf_counter() - started_at) - keep)
    solved = _solve(problem, cfg, budget_left, allow_migration, exact=exact, round_=st.steps)
    solver_done = time.perf_counter()
    answer = cap_disruptions(problem, solved.answer, cfg.max_migrations, cfg.fallback, heuristic_options(cfg))
    st2, changes = commit(st, now, answer, problem, trigger, solved.method, hplan)
    st2 = replace(st2, after_solve=time.perf_counter() - solver_done)
    # Jobs left out of the horizon's commit are still waiting: list them as unplaced with a reason.
    if hplan is not None:
        deferred = [n for n in queued if n not in candidates]
        more = tuple(Unplaced(n, "not selected", "the horizon model starts it later") for n in deferred)
        st2 = replace(st2, allocation=st2.allocation.replace(unplaced=st2.allocation.unplaced + more))
    if solved.fallback is not None:
        st2 = replace(st2, fallbacks=st2.fallbacks + 1)
    plan = Plan(
        now,
        st2.allocation,
        tuple(actions) + tuple(changes),
        trigger,
        method=solved.method,
        fallback=solved.fallback,
        solve_time=time.perf_counter() - started_at,
        gap=answer.gap,
        stale=st.stale,
        error=solved.error,
        horizon=hplan,
    )
    # Jobs the solve ran out of time for are tried again at the next step (an admission by the fallback
    # heuristic), not left waiting for the next trigger: a service's first solve on a loaded machine,
    # its imports counted in the budget, may decide nothing at all.
    undecided = any(u.reason == Reason.TIME_LIMIT.value for u in answer.unplaced)
    return replace(st2, dirty=undecided), plan


def _solve(
    problem: Problem, cfg: ControllerConfig, budget: float, allow_migration: bool, *, exact: bool, round_: int = 0
) -> Solved:
    """The method's answer, or the fallback heuristic's when the method has none (see the module
    docstring). ``round_`` (the controller's step count) rotates the ``round-robin`` ordering."""
    from optalloc.solve import solve

    reason: FallbackReason | None = None
    error = ""
    if exact and cfg.method != cfg.fallback:
        options = cfg.options.replace(
            time_limit=budget, allow_migration=allow_migration, order=cfg.queue_order, round=round_
        )
        try:
            answer = solve(problem, cfg.method, options=options)
        except MethodUnavailable as err:
            reason, error = FallbackReason.UNAVAILABLE, f"{cfg.method} is unavailable: {err}"
        else:
            if answer.status.has_solution:
                return Solved(answer, answer.method or cfg.method)
            infeasible = answer.status is Status.INFEASIBLE
            reason = FallbackReason.INFEASIBLE if infeasible else FallbackReason.NO_ANSWER
            error = f"{cfg.method} returned {answer.status.value} within {budget:.2f}s"
        log.warning("%s; falling back to %s", error, cfg.fallback)
    answer = solve(problem, cfg.fallback, options=heuristic_options(cfg, round_))
    if reason is not None:
        answer = answer.replace(stats={**answer.stats, "fallback": reason.value, "fallback_from": cfg.method})
    return Solved(answer, answer.method or cfg.fallback, reason, error)


# Right-sizing ---------------------------------------------------------------------------------


def _right_size(
    st: ControllerState, rs: RightSizing, trigger: Trigger
) -> tuple[ControllerState, list[Action], dict[str, Job]]:
    by_job = st.allocation.by_job()
    found = rightsize.candidates(st.jobs, by_job, {n.name: n for n in st.nodes}, st.usage, rs)
    if not found:
        return st, [], {}
    jobs = dict(st.jobs)
    requested = dict(st.requested)
    actions: list[Action] = []
    for name, rz in found.items():
        new_ps = tuple(replace(p, gpu_milli=rz.share) for p in by_job[name])
        requested.setdefault(name, rz.before)
        jobs[name] = rz.job
        actions.append(
            Action(ActionKind.RESIZE, name, rz.reason(f"{trigger.kind} re-solve"), new_ps, tuple(by_job[name]))
        )
        by_job[name] = list(new_ps)
    allocation = st.allocation.replace(placements=tuple(p for ps in by_job.values() for p in ps))
    out = replace(st, jobs=MappingProxyType(jobs), requested=MappingProxyType(requested))._with_allocation(allocation)
    log.info("right-sized %d jobs: %s", len(found), ", ".join(sorted(found)))
    return out, actions, {name: rz.job for name, rz in found.items()}
