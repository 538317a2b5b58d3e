"""The rolling-horizon model: when should each queued job start, over the next H seconds?

A small time-indexed CP-SAT model that the adaptive controller solves at a re-solve; it commits only the
jobs the model starts now and places those concretely with ``optalloc.solve``, so every committed
allocation is verified. The math (docs/adaptive.md has it with the reasoning):

- Time: ``S`` slots with boundaries ``0 = b_0 < b_1 < ... < b_S = H`` seconds from now; slot ``t`` is
  ``[b_t, b_{t+1})``. Slot lengths grow by the factor ``growth`` (1: uniform), so that a few dozen
  slots see far ahead with a fine grid near now. Slot 0 is "now".
- Nodes of the same shape form a group ``g`` whose capacity ``C_{g,r}`` is the sum over its nodes,
  for ``r`` in CPU milli-cores, memory MiB, GPU milli (aggregated: a relaxation of the node-level
  packing, which the concrete placement then enforces). Running jobs hold their group's resources in
  every slot that begins before their remaining time is over (unknown: the whole horizon), leaving
  ``F_{g,t,r}``.
- Queued job ``j`` (the whole gang: ``min_replicas`` replicas) demands ``a_{j,r}``, lasts ``D_j``
  seconds (an unknown duration counts as ``unknown_duration``, by default the horizon) and weighs
  ``w_j`` (the problem's priority weight). Started in slot ``t`` it holds slots ``t .. e_{j,t} - 1``
  where ``e_{j,t}`` is the first slot whose boundary is at or after ``b_t + D_j``.
- Variables: ``y_{j,g,t}`` boolean, job ``j`` starts in slot ``t`` on group ``g``, for the groups where
  it is eligible (a node of the group could host a replica; a single-node job's replicas fit one node;
  a spread job has enough nodes; at most ``max_groups`` groups, those with the most free capacity of
  its main resource). At most one start: ``sum_{g,t} y_{j,g,t} <= 1``.
- Capacity, per group, resource and slot ``u``: ``sum_j a_{j,r} sum_{t <= u < e_{j,t}} y_{j,g,t} <=
  F_{g,u,r}`` (skipped where every candidate together fits).
- Objective: minimise ``sum_j w_j (b_{s_j} + D_j)``, the weighted completion time from now, where a job
  not started within the horizon counts as started at its end (``b_{s_j} = H``): the penalty that keeps
  the model from leaving work out. Linear in ``y``: ``const + sum w_j (b_t - H) y_{j,g,t}``.

Identical queued jobs (same demand, duration, weight, groups) start in arrival order (a
symmetry-breaking constraint: it removes equivalent permutations the search would otherwise explore).
A greedy list schedule in weighted-shortest-processing-time order hints the search, is the answer when
it meets the lower bound (every job starting now) and when CP-SAT finds nothing within its time limit.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.core import Problem, ProblemError
from optalloc.core.job import PlacementRule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HorizonConfig:
    """Size and budget of the horizon model.

    ``horizon``: seconds looked ahead. ``slots``: how many time slots (a few dozen keeps it small).
    ``growth``: each slot is this many times longer than the one before (1: uniform slots; above 1 the
    horizon reaches far, with a fine grid near now: pick the horizon about as long as the jobs are).
    ``max_jobs``: queued jobs in the model at most (by priority, then alternately the shortest and the
    oldest; the others wait for a later re-solve). ``max_groups``: node groups offered to one job at
    most (those with the most free capacity of its main resource now). ``unknown_duration``: seconds
    assumed for a job without an estimate (None: the horizon). ``time_limit``: seconds for building and
    solving the model; ``relative_gap``: stop once the answer is proven within this fraction of the
    optimum; ``workers`` and ``seed`` for CP-SAT's search.
    """

    horizon: float = 3600.0
    slots: int = 24
    growth: float = 1.0
    max_jobs: int = 64
    max_groups: int = 4
    unknown_duration: float | None = None
    time_limit: float = 1.0
    relative_gap: float = 0.01
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.horizon, int | float) and self.horizon > 0):
            raise ProblemError("horizon.horizon", self.horizon, "is not a positive number of seconds")
        for name in ("slots", "max_jobs", "max_groups", "workers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ProblemError(f"horizon.{name}", value, "is not a positive integer")
        if not (isinstance(self.growth, int | float) and 1.0 <= self.growth <= 10.0):
            raise ProblemError("horizon.growth", self.growth, "is not a slot growth factor in [1, 10]")
        if self.unknown_duration is not None and not self.unknown_duration > 0:
            raise ProblemError("horizon.unknown_duration", self.unknown_duration, "is not a positive number of seconds")
        if not (isinstance(self.relative_gap, int | float) and 0 <= self.relative_gap < 1):
            raise ProblemError("horizon.relative_gap", self.relative_gap, "is not in [0, 1)")
        if not (isinstance(self.time_limit, int | float) and self.time_limit > 0):
            raise ProblemError("horizon.time_limit", self.time_limit, "is not a positive number of seconds")

    @property
    def boundaries(self) -> np.ndarray:
        """float (slots + 1,): slot boundaries in seconds from now, 0 first and ``horizon`` last."""
        lengths = self.growth ** np.arange(self.slots, dtype=np.float64)
        edges = np.concatenate(([0.0], np.cumsum(lengths)))
        out: np.ndarray = edges / edges[-1] * self.horizon
        return out


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one shape: their indices in the problem, and their summed cpu, memory, GPU milli."""

    nodes: tuple[int, ...]
    capacity: tuple[int, int, int]


@dataclass(frozen=True)
class HorizonPlan:
    """The schedule the model found.

    ``start_now``: queued jobs it starts in slot 0 (what the controller commits). ``start``: seconds
    from now at which each modelled job starts (None: not within the horizon). ``group``: the node
    group each started job was given. ``unscheduled``: queued jobs left out of the model, beyond
    ``max_jobs`` (a later re-solve sees them). ``ungrouped``: queued jobs that no single node group
    could ever host (e.g. a gang spanning node shapes): the model cannot schedule them, the caller
    may try them directly. ``boundaries``: the slot boundaries, seconds from now. ``status``:
    ``optimal`` (proven), ``feasible`` (stopped at the time limit, or once within ``relative_gap``),
    ``greedy`` (CP-SAT found nothing in time: the list schedule) or ``empty``. ``objective``/``bound``: weighted completion time from now, seconds.
    """

    start_now: tuple[str, ...]
    start: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))
    group: Mapping[str, int | None] = field(default_factory=lambda: MappingProxyType({}))
    unscheduled: tuple[str, ...] = ()
    ungrouped: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()
    status: str = "empty"
    objective: float | None = None
    bound: float | None = None
    wall_time: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", MappingProxyType(dict(self.start)))
        object.__setattr__(self, "group", MappingProxyType(dict(self.group)))


def node_groups(problem: Problem) -> tuple[NodeGroup, ...]:
    """Nodes grouped by shape (everything but the name), in order of first appearance."""
    members: dict[Any, list[int]] = defaultdict(list)
    for i, node in enumerate(problem.nodes):
        members[node.shape].append(i)
    cap = problem.capacity
    out = []
    for idx in members.values():
        total = cap[idx].sum(axis=0)
        out.append(NodeGroup(tuple(idx), (int(total[0]), int(total[1]), int(total[2]))))
    return tuple(out)


def plan_horizon(
    problem: Problem,
    *,
    remaining: Mapping[str, float | None] | None = None,
    config: HorizonConfig | None = None,
    time_limit: float | None = None,
) -> HorizonPlan:
    """Schedule the queued jobs of ``problem`` (those not in ``problem.current``) over the horizon.

    ``remaining``: seconds each running job still needs (None or absent: unknown, it holds its
    resources over the whole horizon). ``time_limit`` overrides ``config.time_limit``.
    """
    from ortools.sat.python import cp_model

    cfg = config or HorizonConfig()
    started = time.perf_counter()
    remaining = remaining or {}
    S = cfg.slots
    bounds = cfg.boundaries  # (S + 1,) seconds from now
    groups = node_groups(problem)
    running = problem.running_jobs
    queued = [j for j, job in enumerate(problem.jobs) if job.name not in running]
    if not queued or not groups:
        return HorizonPlan((), boundaries=tuple(bounds), wall_time=time.perf_counter() - started)
    considered = _select(problem, queued, cfg)
    chosen = set(considered)
    unscheduled = [problem.jobs[j].name for j in queued if j not in chosen]

    # Free capacity per group and slot once the running jobs are accounted for: (G, S, 3). A running
    # job holds every slot that begins before its remaining time is over.
    group_of_node = np.empty(len(problem.nodes), dtype=np.int64)
    for g, group in enumerate(groups):
        group_of_node[list(group.nodes)] = g
    cap = np.array([group.capacity for group in groups], dtype=np.int64)  # (G, 3)
    held: dict[tuple[int, int], np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))
    if problem.current is not None:
        for p in problem.current.placements:
            job = problem.jobs[problem.job_index[p.job]]
            rem = remaining.get(p.job)
            slots = S if rem is None or not math.isfinite(rem) else int(np.searchsorted(bounds, rem, side="left"))
            if slots > 0:
                g = int(group_of_node[problem.node_index[p.node]])
                held[(g, min(S, slots))] += (job.cpu, job.memory, len(p.gpus) * p.gpu_milli)
    free = np.repeat(cap[:, None, :], S, axis=1)
    for (g, slots), use in held.items():
        free[g, :slots] -= use
    free = np.maximum(free, 0)

    # Queued jobs: demand, duration, weight, eligible groups; end[k, t] = the first slot after the job
    # if it starts in slot t (it holds slots t .. end - 1).
    jobs = [problem.jobs[j] for j in considered]
    need = np.array([job.min_replicas or job.replicas for job in jobs], dtype=np.int64)
    demand = problem.demand[considered] * need[:, None]  # (J, 3) cpu, memory, GPU milli for the gang
    unknown = cfg.unknown_duration if cfg.unknown_duration is not None else cfg.horizon
    dur = np.array([job.duration if job.duration is not None else unknown for job in jobs], dtype=np.float64)
    end = np.searchsorted(bounds, bounds[None, :S] + dur[:, None], side="left")
    end = np.clip(end, np.arange(S)[None, :] + 1, S)
    weight = problem.priority_weight[considered].astype(np.int64)
    eligible = [_eligible_groups(problem, j, groups, int(need[k])) for k, j in enumerate(considered)]
    keep = [k for k in range(len(jobs)) if eligible[k]]
    ungrouped = [jobs[k].name for k in range(len(jobs)) if not eligible[k]]
    if not keep:
        return HorizonPlan(
            (),
            unscheduled=tuple(unscheduled),
            ungrouped=tuple(ungrouped),
            boundaries=tuple(bounds),
            wall_time=time.perf_counter() - started,
        )
    # At most max_groups groups per job: those with the most free capacity of its main resource now.
    for k in keep:
        if len(eligible[k]) > cfg.max_groups:
            res = 2 if demand[k, 2] else 0
            eligible[k] = sorted(sorted(eligible[k], key=lambda g: (-int(free[g, 0, res]), g))[: cfg.max_groups])

    def completion(answer: Mapping[int, tuple[int, int | None]]) -> float:
        """Weighted completion seconds from now; a job not started counts as started at the horizon."""
        return float(sum(weight[k] * (bounds[answer[k][0]] + dur[k]) for k in keep))

    greedy = _list_schedule(keep, eligible, demand, end, dur, weight, free)
    trivial = float(sum(weight[k] * dur[k] for k in keep))  # every job starting now: a lower bound
    if all(greedy[k][0] == 0 for k in keep):  # nothing waits: the list schedule meets the lower bound
        return _result(jobs, keep, greedy, unscheduled, ungrouped, bounds, "optimal", trivial, trivial, started)

    # The model -----------------------------------------------------------------------------------
    build_start = time.perf_counter()
    unit = (bounds[1] - bounds[0]) / 100.0  # objective unit: 1/100 of the first slot, as integers
    tick = np.rint((bounds - bounds[S]) / unit).astype(np.int64)  # b_t - H in units (<= 0)
    model = cp_model.CpModel()
    # y[k, g][t] = job k starts in slot t on node group g.
    y: dict[tuple[int, int], list[Any]] = {}
    for k in keep:
        for g in eligible[k]:
            y[(k, g)] = [model.new_bool_var(f"y{k}_{g}_{t}") for t in range(S)]
        model.add_at_most_one([v for g in eligible[k] for v in y[(k, g)]])
    # Capacity: the jobs holding slot u of group g (started in a slot t <= u with end[k, t] > u) fit
    # what the running jobs leave free, per resource; skipped where every candidate together fits.
    for g in range(len(groups)):
        items = [k for k in keep if (k, g) in y]
        if not items:
            continue
        floor = free[g].min(axis=0)
        for res in range(3):
            if int(demand[items, res].sum()) <= int(floor[res]):
                continue
            for u in range(S):
                terms: list[Any] = []
                coefs: list[int] = []
                for k in items:
                    if demand[k, res]:
                        hold = [t for t in range(u + 1) if end[k, t] > u]
                        terms += [y[(k, g)][t] for t in hold]
                        coefs += [int(demand[k, res])] * len(hold)
                if terms:
                    model.add(cp_model.LinearExpr.weighted_sum(terms, coefs) <= int(free[g, u, res]))

    def slot_of(k: int) -> Any:  # the start slot, S when not started
        vs = [v for g in eligible[k] for v in y[(k, g)]]
        cs = [t - S for g in eligible[k] for t in range(S)]
        return cp_model.LinearExpr.weighted_sum(vs, cs) + S

    # Identical jobs start in arrival order (symmetry breaking).
    classes: dict[Any, list[int]] = defaultdict(list)
    for k in keep:
        classes[(tuple(demand[k]), float(dur[k]), int(weight[k]), tuple(eligible[k]))].append(k)
    for members in classes.values():
        for a, b in itertools.pairwise(members):
            model.add(slot_of(a) <= slot_of(b))
    # Objective: sum_k w_k (b_{s_k} + D_k) = constant + sum_{k,g,t} w_k (b_t - H) y_kgt.
    obj_vars = [v for k in keep for g in eligible[k] for v in y[(k, g)]]
    obj_coefs = [int(weight[k]) * int(tick[t]) for k in keep for g in eligible[k] for t in range(S)]
    # The constant is part of the objective so that the relative gap is that of the completion time.
    constant = int(np.rint(sum(weight[k] * (bounds[S] + dur[k]) for k in keep) / unit))
    model.minimize(cp_model.LinearExpr.weighted_sum(obj_vars, obj_coefs) + constant)
    for k in keep:
        slot, grp = greedy[k]
        for g in eligible[k]:
            for t, v in enumerate(y[(k, g)]):
                model.add_hint(v, g == grp and t == slot)

    solver = cp_model.CpSolver()
    limit = float(time_limit if time_limit is not None else cfg.time_limit)
    solver.parameters.max_time_in_seconds = max(0.01, limit - (time.perf_counter() - build_start))
    solver.parameters.num_workers = cfg.workers
    solver.parameters.random_seed = cfg.seed
    solver.parameters.relative_gap_limit = cfg.relative_gap
    # The time-indexed model is already tight; presolve mostly costs time (measured: it can eat a 1 s
    # budget on ~10^5 terms and return no answer, not even the complete hint).
    solver.parameters.cp_model_presolve = False
    status = solver.solve(model)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        answer: dict[int, tuple[int, int | None]] = {}
        for k in keep:
            answer[k] = (S, None)
            for g in eligible[k]:
                hit = [t for t, v in enumerate(y[(k, g)]) if solver.boolean_value(v)]
                if hit:
                    answer[k] = (hit[0], g)
        # OPTIMAL also reports a stop at relative_gap: call it optimal only when the bound meets it.
        proven = status == cp_model.OPTIMAL and solver.best_objective_bound >= solver.objective_value
        label = "optimal" if proven else "feasible"
        objective = completion(answer)
        bound = objective if proven else min(objective, max(trivial, solver.best_objective_bound * unit))
    else:
        log.info(
            "horizon model: CP-SAT %s within %.2fs; using the list schedule",
            solver.status_name(status),
            solver.parameters.max_time_in_seconds,
        )
        answer, label, objective, bound = greedy, "greedy", completion(greedy), trivial
    return _result(jobs, keep, answer, unscheduled, ungrouped, bounds, label, objective, bound, started)


def _result(
    jobs: list[Any],
    keep: list[int],
    answer: Mapping[int, tuple[int, int | None]],
    unscheduled: list[str],
    ungrouped: list[str],
    bounds: np.ndarray,
    status: str,
    objective: float,
    bound: float | None,
    started: float,
) -> HorizonPlan:
    return HorizonPlan(
        tuple(jobs[k].name for k in keep if answer[k][0] == 0 and answer[k][1] is not None),
        start={jobs[k].name: (float(bounds[answer[k][0]]) if answer[k][1] is not None else None) for k in keep},
        group={jobs[k].name: answer[k][1] for k in keep},
        unscheduled=tuple(unscheduled),
        ungrouped=tuple(ungrouped),
        boundaries=tuple(float(b) for b in bounds),
        status=status,
        objective=objective,
        bound=bound,
        wall_time=time.perf_counter() - started,
    )


def _select(problem: Problem, queued: list[int], cfg: HorizonConfig) -> list[int]:
    """The queued jobs the model sees when there are more than ``max_jobs``: by priority, then half by
    shortest estimated duration (those most likely to start and finish within the horizon) and half by
    arrival (so that a long job is not left out of every model forever)."""
    if len(queued) <= cfg.max_jobs:
        return sorted(queued, key=lambda j: (problem.jobs[j].arrival, j))
    unknown = cfg.unknown_duration if cfg.unknown_duration is not None else cfg.horizon
    jobs = problem.jobs

    def duration(j: int) -> float:
        d = jobs[j].duration
        return unknown if d is None else d

    by_short = sorted(queued, key=lambda j: (-jobs[j].priority, duration(j), jobs[j].arrival, j))
    by_age = sorted(queued, key=lambda j: (-jobs[j].priority, jobs[j].arrival, j))
    picked: dict[int, None] = {}
    for short, old in zip(by_short, by_age, strict=True):
        for j in (short, old):
            if len(picked) < cfg.max_jobs:
                picked.setdefault(j)
    return sorted(picked, key=lambda j: (jobs[j].arrival, j))


def _eligible_groups(problem: Problem, j: int, groups: tuple[NodeGroup, ...], need: int) -> list[int]:
    """Groups one of whose nodes can host a replica of job ``j`` (and the whole job, for single-node
    and spread jobs), and whose summed capacity can hold the whole gang."""
    spec = problem.jobs[j]
    fits = problem.fits_empty(j)
    cap = problem.capacity
    out = []
    for g, grp in enumerate(groups):
        rep = grp.nodes[0]
        if not fits[rep]:
            continue
        if spec.placement is PlacementRule.SINGLE_NODE and need > 1:
            per = need
            if spec.cpu:
                per = min(per, int(cap[rep, 0]) // spec.cpu)
            if spec.memory:
                per = min(per, int(cap[rep, 1]) // spec.memory)
            if spec.gpus:
                per = min(per, int(problem.node_gpus[rep]) // spec.gpus)
            elif spec.gpu_milli:
                per = min(per, int(problem.node_gpus[rep]) * (1000 // spec.gpu_milli))
            if per < need:
                continue
        if spec.placement is PlacementRule.SPREAD and len(grp.nodes) < need:
            continue
        total = problem.demand[j] * need
        if (total > np.array(grp.capacity)).any():
            continue
        out.append(g)
    return out


def _list_schedule(
    keep: list[int],
    eligible: list[list[int]],
    demand: np.ndarray,
    end: np.ndarray,
    dur: np.ndarray,
    weight: np.ndarray,
    free: np.ndarray,
) -> dict[int, tuple[int, int | None]]:
    """Weighted-shortest-processing-time list schedule: jobs by ``D_j / w_j``, each at the earliest
    slot (and group) where it fits. Returns ``k -> (slot, group)``; ``(S, None)`` if it never fits."""
    S = free.shape[1]
    free = free.copy()
    order = sorted(keep, key=lambda k: (dur[k] / max(1, weight[k]), k))
    out: dict[int, tuple[int, int | None]] = {}
    for k in order:
        best: tuple[int, int | None] = (S, None)
        for g in eligible[k]:
            ok = (free[g] >= demand[k]).all(axis=1)  # (S,) slots with room
            # next_bad[t] = first slot >= t without room (S if none)
            next_bad = np.full(S + 1, S, dtype=np.int64)
            for t in range(S - 1, -1, -1):
                next_bad[t] = next_bad[t + 1] if ok[t] else t
            starts = np.flatnonzero(next_bad[:S] >= end[k])
            if len(starts) and starts[0] < best[0]:
                best = (int(starts[0]), g)
        if best[1] is not None:
            t = best[0]
            free[best[1], t : end[k, t]] -= demand[k]
        out[k] = best
    return out
