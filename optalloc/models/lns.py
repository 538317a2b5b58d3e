"""Large neighbourhood search: improve an allocation by solving small exact sub-problems node by node.

The program over node types is a relaxation; decoding its counts onto nodes strands a little capacity
(GPUs left free on nodes whose CPU is gone, CPU left on nodes whose GPUs are taken), and no greedy
repair pairs those leftovers perfectly. This search does, a few nodes at a time: it picks a
neighbourhood of ``NODES`` nodes of one GPU model — one with stranded GPU capacity and the ones whose
free CPU and memory complement it best, plus a few at random —, frees the single-replica jobs placed
there, adds the jobs left out that could run there, and solves that sub-problem exactly (one node type
per node: the program is exact) with CP-SAT, hinted with what runs there now. An answer better on the
neighbourhood is better on the whole (the objective adds up node by node for single-replica jobs), and
replaces it. Jobs that run now (``problem.current``) and multi-replica jobs stay where they are.

Each step is a few hundred milliseconds; the search runs until the budget's deadline (less ``reserve``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from optalloc.core import Allocation, ClusterState, Placement, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions

log = logging.getLogger(__name__)

#: Nodes per neighbourhood (at most ``EXACT_NODE_LIMIT``, so that the sub-program is exact per node).
NODES = 8
#: Jobs left out offered to one neighbourhood: at most this many, and this many of one kind.
CANDIDATES = 240
PER_CLASS = 12
#: The search ends after this many steps in a row without a gain (nothing left to find nearby).
STALE_STEPS = 400
#: Seconds one sub-problem may take at most (and the least worth starting one with).
STEP_LIMIT = 0.2
MIN_STEP = 0.1


@dataclass
class LnsResult:
    allocation: Allocation
    steps: int
    improved: int
    gain: float


def improve(
    problem: Problem,
    allocation: Allocation,
    options: SolveOptions,
    budget: Budget,
    *,
    reserve: float = 0.0,
    engine: str = "lns",
) -> LnsResult:
    """Improve ``allocation`` (valid for ``problem``) until the budget runs out; the best one found."""
    from optalloc.models.exact import solve_exact

    rng = np.random.default_rng(options.seed)
    value = _objective(problem, allocation)
    start_value = value
    steps = improved = 0
    running = problem.running_jobs
    fixed_jobs = running | {j.name for j in problem.jobs if j.replicas > 1}
    incumbent = _Incumbent(problem, allocation, fixed_jobs)
    state = ClusterState.of(problem, allocation)
    stale = 0
    while not budget.expired(reserve + MIN_STEP) and stale < STALE_STEPS:
        steps += 1
        hood = _neighbourhood(problem, state, rng)
        if hood is None:
            break
        sub, sub_current = incumbent.sub_problem(hood, rng)
        if sub is None:
            stale += 1
            continue
        before = _objective(sub, sub_current)
        limit = min(STEP_LIMIT, budget.left() - reserve)
        if limit <= 0:  # building the neighbourhood used up what was left (a time limit must be positive)
            break
        # The sub-problem's bounds and objectives are not the whole problem's: a budget of its own, ending
        # ``limit`` clock seconds from now (a time kept back, stretched by the pace, would end it at once).
        step_budget = budget.detached(within=limit)
        try:
            answer = solve_exact(
                sub,
                options.replace(time_limit=limit, relative_gap=0.0),
                step_budget,
                backend="cpsat",
                hint=sub_current,
                group_nodes=False,
            )
        except OutOfTime:
            break
        whole = len(hood) == len(problem.nodes) and answer.status is Status.OPTIMAL
        if not answer.status.has_solution or answer.objective is None or answer.objective <= before:
            if whole:
                break  # the neighbourhood was the whole problem, solved to optimality: nothing left to find
            stale += 1
            continue
        incumbent.replace(hood, sub_current, answer)
        # The objective adds up node by node for the single-replica jobs the neighbourhood moves.
        value += answer.objective - before
        for p in sub_current.placements:
            state.apply(p, sign=+1)
        for p in answer.placements:
            state.apply(p, sign=-1)
        improved += 1
        stale = 0
        budget.improve(engine, objective=value)
    gain = value - start_value
    stats = {**allocation.stats, "lns_steps": steps, "lns_improved": improved, "lns_gain": gain}
    current = incumbent.allocation(allocation) if improved else allocation
    return LnsResult(current.replace(objective=float(value), stats=stats), steps, improved, gain)


def _objective(problem: Problem, allocation: Allocation) -> float:
    value = evaluate(problem, allocation)
    return float(value.primary if problem.weights.lexicographic else value.total)


def _neighbourhood(problem: Problem, state: ClusterState, rng: np.random.Generator) -> np.ndarray | None:
    """Node indices of one neighbourhood: a node with stranded GPU capacity (any node when no GPU is
    free), the nodes of its GPU model with the most free CPU and memory (what it lacks), and a few at
    random."""
    if not len(problem.nodes):
        return None
    free_gpu = np.where(state.gpu > 0, state.gpu, 0).sum(axis=1)
    stranded = np.flatnonzero(free_gpu >= 1)
    if len(stranded):
        weights = free_gpu[stranded].astype(np.float64)
        seed = int(rng.choice(stranded, p=weights / weights.sum()))
    else:  # every GPU is taken: swaps may still place more valuable jobs; any node
        seed = int(rng.integers(len(problem.nodes)))
    same = np.flatnonzero(problem.node_model == problem.node_model[seed])
    same = same[same != seed]
    if not len(same):
        return np.array([seed])
    cap = problem.capacity[same]
    room = np.minimum(state.cpu[same] / np.maximum(cap[:, 0], 1), state.memory[same] / np.maximum(cap[:, 1], 1))
    # Half by complementary room (with random ties), half at random among the same model.
    order = np.lexsort((rng.random(len(same)), -room))
    take = NODES - 1
    by_room = same[order[: take // 2 + 1]]
    rest = np.setdiff1d(same, by_room)
    extra = rng.choice(rest, size=min(len(rest), take - len(by_room)), replace=False) if len(rest) else rest
    return np.unique(np.concatenate([[seed], by_room, extra]).astype(np.int64))


class _Incumbent:
    """The allocation being improved, indexed for the search: placements by node, jobs left out by kind
    (what one step reads and replaces costs the neighbourhood's size, not the cluster's)."""

    def __init__(self, problem: Problem, allocation: Allocation, fixed_jobs: frozenset[str] | set[str]) -> None:
        self.problem = problem
        self.fixed_jobs = fixed_jobs
        self.by_node: dict[str, list[Placement]] = {}
        for p in allocation.placements:
            self.by_node.setdefault(p.node, []).append(p)
        self.unplaced: dict[str, Unplaced] = {u.job: u for u in allocation.unplaced}
        self._key: dict[tuple, int] = {}  # demand key -> kind number
        self.kind = np.array([self._key.setdefault(j.demand_key, len(self._key)) for j in problem.jobs])
        self._fits: dict[int, np.ndarray] = {}  # kind -> the nodes an empty node of which could hold it
        # Kinds left out -> their job indices (every kind the search may offer: not running, one replica).
        self.left_out: dict[int, set[int]] = {}
        for u in allocation.unplaced:
            self._left(u)

    def _left(self, u: Unplaced) -> None:
        if u.reason in (Reason.INSUFFICIENT_CAPACITY, Reason.NOT_SELECTED) and u.job not in self.fixed_jobs:
            j = self.problem.job_index[u.job]
            self.left_out.setdefault(int(self.kind[j]), set()).add(j)

    def _placed(self, job: str) -> None:
        if self.unplaced.pop(job, None) is not None:
            j = self.problem.job_index[job]
            members = self.left_out.get(int(self.kind[j]))
            if members is not None:
                members.discard(j)
                if not members:
                    del self.left_out[int(self.kind[j])]

    def sub_problem(self, hood: np.ndarray, rng: np.random.Generator) -> tuple[Problem | None, Allocation]:
        """The neighbourhood as a problem: its nodes, the single-replica jobs on them (free to move or
        stop), the jobs left out that could run there, and what must stay (running or multi-replica
        jobs) as current; with what runs there now as the hint."""
        problem = self.problem
        on_hood = [p for n in hood.tolist() for p in self.by_node.get(problem.nodes[n].name, ())]
        movable = [p for p in on_hood if p.job not in self.fixed_jobs]
        kept = [p for p in on_hood if p.job in self.fixed_jobs]
        value = problem.replica_value
        # Every kind of job left out is offered (at most ``PER_CLASS`` of a kind, chosen at random), so
        # that the sub-problem can pair what its nodes have left with whatever fits it.
        candidates: list[int] = []
        kinds = sorted(self.left_out.items(), key=lambda kv: (-int(value[next(iter(kv[1]))]), kv[0]))
        for kind, members in kinds:
            some = next(iter(members))
            if kind not in self._fits:
                self._fits[kind] = problem.fits_empty(some)
            if self._fits[kind][hood].any():
                pool = sorted(members)
                take = pool if len(pool) <= PER_CLASS else rng.choice(pool, PER_CLASS, replace=False).tolist()
                candidates.extend(take)
                if len(candidates) >= CANDIDATES:
                    break
        if not candidates:
            return None, Allocation((), method="current", status=Status.FEASIBLE)
        chosen = sorted({problem.job_index[p.job] for p in on_hood} | set(candidates))
        sub_jobs = tuple(problem.jobs[j] for j in chosen)
        sub_nodes = tuple(problem.nodes[n] for n in hood.tolist())
        fixed = Allocation(tuple(kept), method="fixed", status=Status.FEASIBLE)
        sub = Problem(
            sub_nodes, sub_jobs, current=fixed if kept else None, weights=problem.weights, gpu_models=problem.gpu_models
        )
        hint = Allocation(tuple(kept) + tuple(movable), method="current", status=Status.FEASIBLE)
        return sub, hint

    def replace(self, hood: np.ndarray, before: Allocation, answer: Allocation) -> None:
        """The neighbourhood's placements (``before``) replaced by ``answer``'s."""
        gone = set(before.placements)
        for n in hood.tolist():
            name = self.problem.nodes[n].name
            kept = [p for p in self.by_node.get(name, ()) if p not in gone]
            if kept:
                self.by_node[name] = kept
            else:
                self.by_node.pop(name, None)
        placed = set()
        for p in answer.placements:
            self.by_node.setdefault(p.node, []).append(p)
            placed.add(p.job)
        for job in placed:
            self._placed(job)
        for job in (answer.placed_jobs | answer.unplaced_jobs) - placed:
            if job not in self.unplaced:
                u = Unplaced(job, Reason.INSUFFICIENT_CAPACITY, "left out by the neighbourhood search")
                self.unplaced[job] = u
                self._left(u)

    def allocation(self, like: Allocation) -> Allocation:
        """The incumbent as an allocation (placements in the problem's job order), ``like``'s fields kept."""
        order = self.problem.job_index
        placements = sorted((p for ps in self.by_node.values() for p in ps), key=lambda p: (order[p.job], p.replica))
        unplaced = sorted(self.unplaced.values(), key=lambda u: order[u.job])
        return like.replace(placements=tuple(placements), unplaced=tuple(unplaced))


__all__ = ["LnsResult", "improve"]
