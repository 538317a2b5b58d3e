"""Adopting an answer: the migration cap, then the actions that lead from what runs to the answer."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from optalloc.adaptive.controller.state import ControllerState
from optalloc.adaptive.drift import Trigger
from optalloc.adaptive.plan import Action, ActionKind
from optalloc.core import Allocation, ClusterState, Placement, Problem, SolverError, Status, verify
from optalloc.core.options import SolveOptions
from optalloc.models.horizon import HorizonPlan

log = logging.getLogger(__name__)


def _key(placements: Sequence[Placement]) -> list[tuple[Any, ...]]:
    return sorted((p.node, p.gpus, p.gpu_milli) for p in placements)


def cap_disruptions(problem: Problem, answer: Allocation, cap: int, fallback: str, options: SolveOptions) -> Allocation:
    """``answer`` with at most ``cap`` running jobs moved or preempted; the others stay where they run.

    Moves beyond the cap are undone (the job keeps its old placements); a start or move that no longer
    fits once that is done is dropped; the ``fallback`` heuristic then places what it can in what is left
    (with ``options``).
    """
    old = problem.current.by_job() if problem.current is not None else {}
    new = answer.by_job()
    moved = [j for j in old if j in new and _key(old[j]) != _key(new[j])]
    stopped = [j for j in old if j not in new]
    if len(moved) + len(stopped) <= cap:
        return answer
    disrupted = sorted(moved + stopped, key=lambda j: (len(old[j]), j))
    allowed = set(disrupted[:cap])
    log.info("plan moves %d running jobs; capped at %d", len(disrupted), cap)
    state = ClusterState.empty(problem)
    kept: list[Placement] = []
    for j, ps in old.items():
        if j not in allowed:
            for p in ps:
                state.apply(p, -1)
            kept += ps
    for j in sorted(allowed):
        if j in new:
            if _take(state, new[j]):
                kept += new[j]
            elif _take(state, old[j]):
                kept += old[j]
    for j, ps in new.items():
        if j not in old and _take(state, ps):
            kept += ps
    from optalloc.solve import solve

    held = Allocation(tuple(kept), method="capped", status=Status.FEASIBLE)
    refill = solve(problem.replace(current=held), fallback, options=options)
    return refill.replace(method=f"{answer.method}+cap", bound=answer.bound)


def _take(state: ClusterState, placements: Sequence[Placement]) -> bool:
    """Take ``placements`` from ``state`` if they all fit; leave ``state`` unchanged otherwise."""
    for p in placements:
        state.apply(p, -1)
    rows = [state.problem.node_index[p.node] for p in placements]
    ok = bool((state.cpu[rows] >= 0).all() and (state.memory[rows] >= 0).all())
    for p in placements:
        n = state.problem.node_index[p.node]
        for g in p.gpus:
            if state.gpu[n, g] < 0 or state.gpu_mem[n, g] < 0:
                ok = False
    if not ok:
        for p in placements:
            state.apply(p, +1)
    return ok


def commit(
    st: ControllerState,
    now: float,
    answer: Allocation,
    problem: Problem,
    trigger: Trigger,
    method: str,
    hplan: HorizonPlan | None,
) -> tuple[ControllerState, list[Action]]:
    """Adopt ``answer`` as what runs, and list the actions that lead there from the old allocation."""
    problems = verify(problem, answer)
    if problems:  # the engines' answers are verified: an invalid one here is a bug, never adopted
        shown = "; ".join(map(str, problems[:3]))
        raise SolverError(f"the controller was about to adopt an invalid allocation from {method}: {shown}")
    old = st.allocation.by_job()
    new = answer.by_job()
    actions: list[Action] = []
    why = f"{trigger.kind} re-solve by {method}" if trigger.kind != "admit" else f"admitted by {method}"
    for name in new:
        if name not in old:
            wait = now - st.waiting_since.get(name, now)
            reason = f"{why}; waited {wait:.0f}s"
            if hplan is not None and name in hplan.start_now:
                reason += "; the horizon model starts it now"
            actions.append(Action(ActionKind.START, name, reason, tuple(new[name])))
        elif _key(old[name]) != _key(new[name]):
            before = Counter(p.node for p in old[name])
            after = Counter(p.node for p in new[name])
            where = (
                "to other GPUs on the same nodes" if before == after else f"from {sorted(before)} to {sorted(after)}"
            )
            actions.append(
                Action(ActionKind.MIGRATE, name, f"{why}: moved {where}", tuple(new[name]), tuple(old[name]))
            )
    for name in old:
        if name not in new:
            actions.append(
                Action(ActionKind.PREEMPT, name, f"{why}: its resources serve higher-value jobs", (), tuple(old[name]))
            )
    started = dict(st.started)
    since = dict(st.waiting_since)
    for a in actions:
        if a.kind is ActionKind.START:
            started[a.job] = now
            since.pop(a.job, None)
        elif a.kind is ActionKind.PREEMPT:
            started.pop(a.job, None)
            since[a.job] = now
    running = answer.placed_jobs
    queue = tuple(n for n in (*st.queue, *(a.job for a in actions if a.kind is ActionKind.PREEMPT)) if n not in running)
    queue = tuple(sorted(dict.fromkeys(queue), key=lambda n: st.jobs[n].arrival))
    allocation = Allocation(
        tuple(answer.placements),
        tuple(u for u in answer.unplaced if u.job in queue),
        method=answer.method or method,
        status=answer.status,
        objective=answer.objective,
        bound=answer.bound,
        wall_time=answer.wall_time,
        stats=answer.stats,
    )
    out = replace(st, queue=queue, started=MappingProxyType(started), waiting_since=MappingProxyType(since))
    out = out._with_allocation(allocation)
    return out, actions
