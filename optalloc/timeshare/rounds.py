"""Realising time shares: every round, integer GPU assignments that follow ``X``, placed and verified.

A policy's ``X[j, k]`` says job ``j`` should run on type ``k`` for that fraction of the time. A round
(``RoundConfig.length`` seconds, Gavel's 360 s by default) runs each job on whole GPUs of one type or
not at all. Which jobs run is decided by a *credit* per (job, type): the rounds it is owed. Every round
adds ``X[j, k]`` and subtracts 1 for the type it ran on (a deficit round-robin; credits are clipped to
``+-memory`` rounds so that a long wait is not paid back at once). So a job that received less than
its share goes first, as in Gavel, and over many rounds each job runs on each type about ``X[j, k]``
of the time.

One round (:meth:`Rounds.assign`):

1. *select*: the (job, type) pairs with a share, by credit + share (then share, arrival, name); each
   job takes its first pair whose type still has ``scale`` GPUs free (GPUs counted per type);
2. *place*: the selected jobs that already run on that type keep their GPUs (no restart); the others
   go onto nodes of the type with optalloc's placement rule (``rule``, best-fit by default) through
   :class:`optalloc.heuristics.Placer`, gangs all or nothing;
3. *fill*: GPUs left idle (a gang that did not fit a server, a type nobody selected) go to the other
   pairs in the same order, then, with ``work_conserving``, to jobs without a share;
4. *verify*: the round's :class:`~optalloc.core.Allocation` (every job of the round placed or listed
   with its reason) goes through :func:`optalloc.verify`; a violation raises :class:`SolverError` (a
   bug, never a silent repair).

Between rounds (an arrival, a completion: ``full=False``) nothing is preempted: running jobs keep their
GPUs and idle GPUs are filled in the same order.

On the pooled (heterogeneity-agnostic) view the only type is ``"*"``: a job is placed on any GPU it
may use, wherever the rule puts it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.core import Allocation, Job, Node, Placement, Problem, ProblemError, Reason, SolverError, Status, verify
from optalloc.core.state import allocation_of, unplaced_of
from optalloc.timeshare.problem import POOL, Shares

log = logging.getLogger(__name__)

WAITS = "time share: waits this round"


@dataclass(frozen=True)
class RoundConfig:
    """Knobs of the round mechanism.

    ``length``: seconds per round. ``rule``: the placement rule (``optalloc.heuristics.RULES``).
    ``memory``: credits are clipped to ``[-memory, memory]`` rounds. ``threshold``: shares below this
    count as none. ``work_conserving``: idle GPUs go to jobs without a share too. ``verify``: check
    every round's allocation with ``optalloc.verify``. ``seed``: for the placement rule.
    """

    length: float = 360.0
    rule: str = "best-fit"
    memory: float = 4.0
    threshold: float = 1e-3
    work_conserving: bool = True
    verify: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        from optalloc.heuristics import RULES

        if not (isinstance(self.length, int | float) and self.length > 0):
            raise ProblemError("length", self.length, "is not a positive number of seconds")
        if self.rule not in RULES:
            raise ProblemError("rule", self.rule, f"is not a placement rule (known: {', '.join(RULES)})")
        if not (isinstance(self.memory, int | float) and self.memory >= 1):
            raise ProblemError("memory", self.memory, "is not a number of rounds >= 1")
        if not (isinstance(self.threshold, int | float) and 0 <= self.threshold < 1):
            raise ProblemError("threshold", self.threshold, "is not in [0, 1)")


@dataclass(frozen=True, eq=False)
class RoundResult:
    """One round: the verified ``allocation`` of the round's ``problem`` (nodes up, the jobs of the
    round), the GPU type each running job got (``model``), and the changes from what ran before:
    ``started`` (did not run), ``moved`` (runs on other GPUs: a restart), ``stopped`` (ran, waits now),
    ``kept`` (same GPUs). ``shares`` is the answer the round followed."""

    time: float
    problem: Problem
    allocation: Allocation
    model: Mapping[str, str]
    started: tuple[str, ...]
    moved: tuple[str, ...]
    stopped: tuple[str, ...]
    kept: tuple[str, ...]
    shares: Shares | None
    full: bool = True
    stats: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def placements(self) -> dict[str, tuple[Placement, ...]]:
        """The round's placements per job."""
        return {job: tuple(ps) for job, ps in self.allocation.by_job().items()}


class Rounds:
    """The credit ledger and the assignment of rounds (mutable: one per scheduler)."""

    def __init__(self, config: RoundConfig | None = None) -> None:
        self.config = config or RoundConfig()
        self.credit: dict[tuple[str, str], float] = {}
        self.rounds = 0

    def forget(self, job: str) -> None:
        """Drop a job's credits (it finished or left)."""
        for key in [key for key in self.credit if key[0] == job]:
            del self.credit[key]

    def assign(
        self,
        time: float,
        nodes: Sequence[Node],
        jobs: Sequence[Job],
        shares: Shares | None,
        running: Mapping[str, tuple[Placement, ...]],
        *,
        full: bool = True,
        fraction: float = 1.0,
        order: Sequence[str] | None = None,
        allowed: Mapping[str, Collection[str]] | None = None,
    ) -> RoundResult:
        """The assignment of a round at ``time`` (see the module docstring).

        ``nodes``: the nodes up; ``jobs``: the jobs of the round (those with a share and any other that
        may fill idle GPUs); ``shares``: the policy's answer over (a subset of) ``jobs`` (None: no
        shares, only filling); ``running``: what runs now per job. ``full``: a round boundary (may
        preempt) or an admission between rounds (only fills). ``fraction``: the part of a round this
        assignment lasts (credits are charged for it). ``order``: the job order of the fill without
        shares (default: arrival). ``allowed``: the GPU types each job may run on (where its throughput
        is not 0; default: any its ``gpu_models`` allow) -- on the pool and in the fill too.
        """
        from optalloc.heuristics import Placer

        cfg = self.config
        problem = Problem(tuple(nodes), tuple(jobs), gpu_models=frozenset().union(*(j.gpu_models for j in jobs)))
        index = problem.job_index
        models_of = _type_masks(problem)
        pairs = self._pairs(problem, shares)
        chosen: dict[str, str] = {}
        if full:
            chosen = _select(problem, pairs, models_of)
        # Keep: running jobs that continue on their type (all of them between rounds), nodes still up.
        up = problem.node_index
        kept: list[str] = []
        keep: list[Placement] = []
        model: dict[str, str] = {}
        for name, ps in running.items():
            if name not in index or not ps or any(p.node not in up for p in ps):
                continue
            on = problem.nodes[up[ps[0].node]].gpu_model or ""
            want = chosen.get(name)
            if full and want is None:
                continue
            if full and want != POOL and want != on:
                continue
            kept.append(name)
            keep.extend(ps)
            model[name] = on
        current = Allocation(tuple(keep), method="running", status=Status.FEASIBLE)
        problem = problem.replace(current=current)
        placer = Placer(problem, cfg.rule, seed=cfg.seed)
        placed: dict[str, tuple[Placement, ...]] = {name: running[name] for name in kept}

        def put(name: str, only: np.ndarray | None) -> None:
            if allowed is not None and name in allowed:
                mask = _union(models_of, allowed[name])
                only = mask if only is None else only & mask
            old = running.get(name)
            got = _reclaim(placer, old, only) if old else None
            if got is None:
                got = _place(placer, index[name], only)
            if got is not None:
                placed[name] = got
                model[name] = _model_of(problem, got)

        # Place: the selected jobs in their order, on their type (on their old GPUs when those are free).
        for name, kind in chosen.items():
            if name not in placed:
                put(name, models_of.get(kind))
        # Fill: idle GPUs to the other pairs in order, then (work-conserving) to jobs without a share.
        for name, kind in pairs:
            if name not in placed:
                put(name, models_of.get(kind))
        if cfg.work_conserving:
            shared = {name for name, _ in pairs}
            rest = [j.name for j in problem.jobs if j.name not in placed and j.name not in shared]
            if order is None:
                rest.sort(key=lambda n: (problem.jobs[index[n]].arrival, n))
            else:
                rank = {n: i for i, n in enumerate(order)}
                rest.sort(key=lambda n: (rank.get(n, len(rank)), n))
            for name in rest:
                put(name, None)
        allocation = self._allocation(problem, placed, shares, full)
        self._charge(shares, model, fraction)
        if full:
            self.rounds += 1
        started, moved, stopped, same = _changes(running, placed)
        return RoundResult(
            time,
            problem.replace(current=None),
            allocation,
            MappingProxyType(model),
            started,
            moved,
            stopped,
            same,
            shares,
            full,
            MappingProxyType({"selected": len(chosen), "pairs": len(pairs), "placed": len(placed)}),
        )

    # Steps ------------------------------------------------------------------------------------
    def _pairs(self, problem: Problem, shares: Shares | None) -> list[tuple[str, str]]:
        """The (job, type) pairs with a share, in the order they are served: credit + share, share,
        arrival, name."""
        if shares is None or shares.X is None:
            return []
        cfg = self.config
        X = shares.X
        models = shares.problem.models
        known = problem.job_index
        keys: list[tuple[float, float, float, str, str]] = []
        rows, cols = np.nonzero(X > cfg.threshold)  # noqa: SIM300
        for j, k in zip(rows.tolist(), cols.tolist(), strict=True):
            name = shares.problem.jobs[j]
            if name not in known:
                continue
            x = float(X[j, k])
            owed = self.credit.get((name, models[k]), 0.0) + x
            keys.append((-owed, -x, float(shares.problem.arrival[j]), name, models[k]))
        keys.sort()
        return [(name, kind) for _, _, _, name, kind in keys]

    def _charge(self, shares: Shares | None, model: Mapping[str, str], fraction: float) -> None:
        """Credits: + share x fraction for every pair, - fraction for the type each job ran on."""
        if shares is None or shares.X is None or fraction <= 0:
            return
        cap = self.config.memory
        X = shares.X
        models = shares.problem.models
        pooled = models == (POOL,)
        for j, name in enumerate(shares.problem.jobs):
            on = model.get(name)
            for k, kind in enumerate(models):
                x = float(X[j, k])
                ran = on is not None and (pooled or on == kind)
                if x <= 0 and not ran:
                    continue
                key = (name, kind)
                value = self.credit.get(key, 0.0) + fraction * (x - (1.0 if ran else 0.0))
                self.credit[key] = min(cap, max(-cap, value))

    def _allocation(
        self, problem: Problem, placed: Mapping[str, tuple[Placement, ...]], shares: Shares | None, full: bool
    ) -> Allocation:
        placements = tuple(p for ps in placed.values() for p in ps)
        unplaced = []
        for job in problem.jobs:
            if job.name in placed:
                continue
            if problem.hostable(problem.job_index[job.name]):
                unplaced.append(unplaced_of(job.name, Reason.NOT_SELECTED.value, WAITS))
            else:
                unplaced.append(unplaced_of(job.name, Reason.FITS_NO_NODE.value))
        label = "timeshare" if shares is None else f"timeshare:{shares.policy}"
        allocation = allocation_of(
            placements,
            tuple(unplaced),
            status=Status.FEASIBLE,
            stats={"full": full},
            method=label,
        )
        if self.config.verify:
            found = verify(problem.replace(current=None), allocation)
            if found:
                shown = "; ".join(str(v) for v in found[:3])
                raise SolverError(f"{label}: the round's allocation is invalid: {shown}")
        return allocation


def _type_masks(problem: Problem) -> dict[str, np.ndarray | None]:
    """Per GPU type, bool (nodes,): its nodes; the pool ``"*"`` maps to None (every node)."""
    out: dict[str, np.ndarray | None] = {POOL: None}
    for k, name in enumerate(problem.model_names):
        out[name] = problem.node_model == k
    return out


def _union(masks: Mapping[str, np.ndarray | None], kinds: Collection[str]) -> np.ndarray:
    """bool (nodes,): the nodes of any of ``kinds``."""
    size = next(len(m) for m in masks.values() if m is not None) if len(masks) > 1 else 0
    out = np.zeros(size, dtype=bool)
    for kind in kinds:
        mask = masks.get(kind)
        if mask is not None:
            out |= mask
    return out


def _select(problem: Problem, pairs: list[tuple[str, str]], masks: Mapping[str, np.ndarray | None]) -> dict[str, str]:
    """Step 1: each job its first pair whose type has ``scale`` GPUs free, counting GPUs per type."""
    gpus = problem.node_gpus.astype(np.float64)
    free = {kind: float(gpus.sum() if mask is None else gpus[mask].sum()) for kind, mask in masks.items()}
    total = float(gpus.sum())
    pooled = all(kind == POOL for _, kind in pairs)
    chosen: dict[str, str] = {}
    for name, kind in pairs:
        if name in chosen or kind not in free:
            continue
        job = problem.jobs[problem.job_index[name]]
        size = job.gpu_demand * job.replicas / 1000.0
        room = total if pooled else free[kind]
        if size <= room + 1e-9:
            chosen[name] = kind
            if pooled:
                total -= size
            else:
                free[kind] -= size
    return chosen


def _place(placer: Any, j: int, only: np.ndarray | None) -> tuple[Placement, ...] | None:
    """Every replica of job ``j`` on nodes of ``only`` (None: any), all or none (a gang)."""
    if only is None:
        return placer.place(j)  # type: ignore[no-any-return]
    if not placer.hostable(j):
        return None
    job = placer.problem.jobs[j]
    got: list[Placement] = []
    if job.placement.value == "single-node" and job.replicas > 1:
        node = placer.choose(j, only=only)
        if node < 0 or not _room(placer, j, node, job.replicas):
            return None
        for r in range(job.replicas):
            got.append(placer.take(j, node, r))
        return tuple(got)
    used = np.zeros(len(only), dtype=bool)
    for r in range(job.replicas):
        exclude = used if job.placement.value == "spread" else None
        node = placer.choose(j, only=only, exclude=exclude)
        if node < 0:
            placer.release(got)
            return None
        got.append(placer.take(j, node, r))
        used[node] = True
    return tuple(got)


def _reclaim(placer: Any, old: tuple[Placement, ...], only: np.ndarray | None) -> tuple[Placement, ...] | None:
    """The job's previous placements again, when their nodes are allowed (``only``) and their GPUs,
    CPU and memory are free: a job that keeps its GPUs does not restart."""
    problem = placer.problem
    st = placer.state
    nodes = [problem.node_index.get(p.node) for p in old]
    if any(n is None or (only is not None and not only[n]) for n in nodes):
        return None
    job = problem.jobs[problem.job_index[old[0].job]]
    taken: list[Placement] = []
    for p, n in zip(old, nodes, strict=True):
        ok = st.cpu[n] >= job.cpu and st.memory[n] >= job.memory
        ok = ok and all(st.gpu[n, g] >= p.gpu_milli for g in p.gpus)
        ok = ok and (not job.gpu_memory or all(st.gpu_mem[n, g] >= job.gpu_memory for g in p.gpus))
        if not ok:
            for q in taken:
                st.apply(q, sign=+1)
            placer.touch({problem.node_index[q.node] for q in taken})
            return None
        st.apply(p, sign=-1)
        taken.append(p)
    placer.touch({n for n in nodes if n is not None})
    return tuple(old)


def _room(placer: Any, j: int, node: int, replicas: int) -> bool:
    """Whether ``node`` has room for ``replicas`` replicas of job ``j`` at once."""
    job: Job = placer.problem.jobs[j]
    st = placer.state
    if st.cpu[node] < job.cpu * replicas or st.memory[node] < job.memory * replicas:
        return False
    if job.gpus:
        free = int((st.gpu[node] >= 1000).sum())
        return free >= job.gpus * replicas
    return True


def _model_of(problem: Problem, placements: tuple[Placement, ...]) -> str:
    node = problem.nodes[problem.node_index[placements[0].node]]
    return node.gpu_model or ""


def _changes(
    before: Mapping[str, tuple[Placement, ...]], after: Mapping[str, tuple[Placement, ...]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    started, moved, same = [], [], []
    for name, ps in after.items():
        old = before.get(name)
        if not old:
            started.append(name)
        elif _where(old) != _where(ps):
            moved.append(name)
        else:
            same.append(name)
    stopped = [name for name, ps in before.items() if ps and name not in after]
    return tuple(started), tuple(moved), tuple(sorted(stopped)), tuple(same)


def _where(placements: Sequence[Placement]) -> list[tuple[str, tuple[int, ...]]]:
    return sorted((p.node, tuple(sorted(p.gpus))) for p in placements)
