"""Large neighbourhood search: improve an allocation by solving small exact sub-problems node by node.

The program over node types is a relaxation; decoding its counts onto nodes strands a little capacity
(GPUs left free on nodes whose CPU is gone, CPU left on nodes whose GPUs are taken), and no greedy
repair pairs those leftovers perfectly. This search does, a few nodes at a time: it picks a
neighbourhood of ``NODES`` nodes of one GPU model — one with stranded GPU capacity and the ones whose
free CPU and memory complement it best (plus a few at random when ``NODES`` exceeds four) —, frees the single-replica jobs placed
there, adds the jobs left out that could run there, and solves that sub-problem exactly (one node type
per node: the program is exact) with CP-SAT, hinted with what runs there now. An answer better on the
neighbourhood is better on the whole (the objective adds up node by node for single-replica jobs), and
replaces it. Jobs that run now (``problem.current``) and multi-replica jobs stay where they are.

Each step is a few hundred milliseconds; the search runs until the budget's deadline (less ``reserve``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from optalloc.core import Allocation, ClusterState, Placement, Problem, Reason, Status, Unplaced, evaluate
from optalloc.core.budget import Budget, OutOfTime
from optalloc.core.options import SolveOptions
from optalloc.models.exact import solve_exact

if TYPE_CHECKING:
    from optalloc.models.forked import Stream

log = logging.getLogger(__name__)

#: Nodes per neighbourhood (at most ``EXACT_NODE_LIMIT``, so that the sub-program is exact per node).
#: Three — the stranded node and the two roomiest of its model — gains more per second than 4, 5 or 8
#: (more, faster steps: whole openb default list at 10 s, gap median 0.058% against 0.089% with 4 and
#: 0.14% with 8; multigpu50 at 5 s 0.000% against 0.04% with 8; see docs/anytime.md).
NODES = 3
#: Jobs left out offered to one neighbourhood: at most this many, and this many of one kind.
CANDIDATES = 240
PER_CLASS = 12
#: The search ends after this many steps in a row without a gain (nothing left to find nearby).
STALE_STEPS = 400
#: Seconds one sub-problem may take at most (and the least worth starting one with).
STEP_LIMIT = 0.2
MIN_STEP = 0.1
#: Seconds per job that building the search's answer takes after its last step (unloaded; 4-45 ms for the
#: 8,152 pods of the openb default list, the collector's pauses included), kept back from the deadline:
#: a last step ending at it, then the answer built, took `auto` at 2 s to 2.07-2.10 s.
RESULT_PER_JOB = 6e-6


#: Budgets with at least this many seconds left search in two processes (see :func:`improve`).
PARALLEL_FROM = 1.0
#: Up to this pace (see ``Budget.pace``) a second CPU is likely free for the second process.
PARALLEL_PACE = 2.5
#: Seconds before the search's end at which the second process stops, so that its last steps arrive.
PARALLEL_MARGIN = 0.05


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
    parallel: bool | None = None,
) -> LnsResult:
    """Improve ``allocation`` (valid for ``problem``) until the budget runs out; the best one found.

    ``parallel`` (default: when the machine has a second CPU likely free, the budget a second or more
    left, and the options are not ``deterministic``): the search runs in two processes, the caller's and
    a forked child, each on its own half of every GPU model's nodes and its own half of the jobs left
    out, so that what one changes the other never reads; the child streams each improvement to the
    caller, which applies it to the incumbent as it arrives (and reports it). Each step's CP-SAT then
    runs one worker.
    """
    reserve += budget.pace * RESULT_PER_JOB * len(problem.jobs)  # (the answer is built after the last step)
    search = _Search(problem, allocation, options, budget, reserve, engine)
    if parallel is None:
        parallel = _parallel(problem, options, budget, reserve)
    if not parallel:
        search.run()
        return search.result()
    from optalloc.models.forked import Stream

    half = _halves(problem)

    def helper_work(send: Callable[[object], None]) -> None:  # in the child, on its copy of the search
        search.budget = budget.detached()  # the caller's progress callback is the caller's to run
        search.options = options.replace(workers=1)
        search.restrict(half == 1, side=1)
        search.rng = np.random.default_rng([options.seed, 1])
        search.run(send=send, margin=PARALLEL_MARGIN)

    try:
        helper = Stream(helper_work)
    except OSError as error:  # no process to spare (a limit on processes, or on memory): search alone
        log.warning("neighbourhood search in one process: %s", error)
        search.run()
        return search.result()
    search.options = options.replace(workers=1)
    search.restrict(half == 0, side=0)
    search.rng = np.random.default_rng([options.seed, 0])
    try:
        search.run(poll=lambda: search.absorb(helper.receive()), helper=helper)
    finally:
        search.absorb(helper.close())
    return search.result()


def _parallel(problem: Problem, options: SolveOptions, budget: Budget, reserve: float) -> bool:
    from optalloc.core import usable_cpus

    return (
        not options.deterministic
        and budget.limited
        and budget.left() - reserve >= PARALLEL_FROM
        and budget.pace < PARALLEL_PACE
        and usable_cpus() > 1
        and len(problem.nodes) >= 4 * NODES
    )


def _halves(problem: Problem) -> np.ndarray:
    """(N,) 0 or 1: every other node of each GPU model, in the node list's order."""
    models = problem.node_model
    order = np.argsort(models, kind="stable")
    sorted_models = models[order]
    first = np.concatenate(([True], sorted_models[1:] != sorted_models[:-1]))
    starts = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    half = np.empty(len(order), dtype=np.int64)
    half[order] = (np.arange(len(order)) - starts) % 2
    return half


class _Search:
    """One search's state: the incumbent, the cluster state it leaves, its value and its counters."""

    def __init__(
        self,
        problem: Problem,
        allocation: Allocation,
        options: SolveOptions,
        budget: Budget,
        reserve: float,
        engine: str,
    ) -> None:
        self.problem = problem
        self.start = allocation
        self.options = options
        self.budget = budget
        self.reserve = reserve
        self.engine = engine
        self.rng = np.random.default_rng(options.seed)
        self.value = self.start_value = _objective(problem, allocation)
        self.steps = self.improved = 0
        self.helper_steps = 0
        fixed_jobs = problem.running_jobs | {j.name for j in problem.jobs if j.replicas > 1}
        self.incumbent = _Incumbent(problem, allocation, fixed_jobs)
        self.state = ClusterState.of(problem, allocation)
        self.nodes: np.ndarray | None = None  # the nodes this search may change (None: all)

    def restrict(self, nodes: np.ndarray, *, side: int) -> None:
        """Search only ``nodes`` (a mask) and offer only the jobs left out whose index has parity ``side``."""
        self.nodes = nodes
        self.incumbent.keep_side(side)

    def run(
        self,
        *,
        send: Callable[[object], None] | None = None,
        poll: Callable[[], None] | None = None,
        helper: Stream | None = None,
        margin: float = 0.0,
    ) -> None:
        """Steps until the deadline (less ``margin``) or nothing is left to find; ``send``: each improvement
        to the parent (in the child); ``poll``: called between steps (in the parent, to take the child's)."""
        budget, reserve, problem = self.budget, self.reserve + margin, self.problem
        stale = 0
        searching = True
        while not budget.expired(reserve + MIN_STEP):
            if poll is not None:
                poll()
            if not searching:
                if helper is None or not helper.running:
                    break
                helper.receive(wait=min(0.05, max(0.0, budget.left() - reserve - MIN_STEP)))
                continue
            self.steps += 1
            hood = _neighbourhood(problem, self.state, self.rng, self.nodes)
            sub, sub_current = (None, None) if hood is None else self.incumbent.sub_problem(hood, self.rng)
            if sub is None or sub_current is None:
                stale += 1
                searching = hood is not None and stale < STALE_STEPS
                continue
            before = _objective(sub, sub_current)
            limit = min(STEP_LIMIT, budget.left() - reserve)
            if limit <= 0:  # building the neighbourhood used up what was left (a time limit must be positive)
                break
            # The sub-problem's bounds and objectives are not the whole problem's: a budget of its own, ending
            # ``limit`` clock seconds from now (a time kept back, stretched by the pace, would end it at once).
            try:
                answer = solve_exact(
                    sub,
                    self.options.replace(time_limit=limit, relative_gap=0.0),
                    budget.detached(within=limit),
                    backend="cpsat",
                    hint=sub_current,
                    group_nodes=False,
                    target=before + 1,  # a step only counts when it gains (objectives are whole numbers)
                )
            except OutOfTime:
                break
            if not answer.status.has_solution or answer.objective is None or answer.objective <= before:
                whole = len(hood) == len(problem.nodes) and answer.status is Status.OPTIMAL
                stale += 1
                # The neighbourhood was the whole problem, solved to optimality: nothing left to find.
                searching = not whole and stale < STALE_STEPS
                continue
            stale = 0
            step = _Step(hood, sub_current.placements, answer.placements, answer.placed_jobs | answer.unplaced_jobs)
            self.apply(step, answer.objective - before)
            if send is not None:
                send((step, answer.objective - before, self.steps))

    def apply(self, step: _Step, gain: float, *, offer: bool = True) -> None:
        """One improvement (this search's, or, with ``offer=False``, the other process's)."""
        self.incumbent.replace(step, offer=offer)
        # The objective adds up node by node for the single-replica jobs the neighbourhood moves.
        self.value += gain
        for p in step.before:
            self.state.apply(p, sign=+1)
        for p in step.after:
            self.state.apply(p, sign=-1)
        self.improved += 1
        self.budget.improve(self.engine, objective=self.value)

    def absorb(self, messages: list[object]) -> None:
        """The other process's improvements (its own nodes and jobs: they never touch this search's)."""
        for step, gain, steps in messages:  # type: ignore[misc]
            self.apply(step, gain, offer=False)
            self.helper_steps = steps

    def result(self) -> LnsResult:
        gain = self.value - self.start_value
        steps = self.steps + self.helper_steps
        stats = {**self.start.stats, "lns_steps": steps, "lns_improved": self.improved, "lns_gain": gain}
        current = self.incumbent.allocation(self.start) if self.improved else self.start
        return LnsResult(current.replace(objective=float(self.value), stats=stats), steps, self.improved, gain)


@dataclass(frozen=True)
class _Step:
    """One improvement: the neighbourhood's nodes, its placements before and after, and the jobs its
    sub-problem decided (placed, or left out)."""

    hood: np.ndarray
    before: tuple[Placement, ...]
    after: tuple[Placement, ...]
    jobs: frozenset[str]


def _objective(problem: Problem, allocation: Allocation) -> float:
    value = evaluate(problem, allocation)
    return float(value.primary if problem.weights.lexicographic else value.total)


def _neighbourhood(
    problem: Problem, state: ClusterState, rng: np.random.Generator, nodes: np.ndarray | None = None
) -> np.ndarray | None:
    """Node indices of one neighbourhood: a node with stranded GPU capacity (any node when no GPU is
    free), the nodes of its GPU model with the most free CPU and memory (what it lacks), and a few at
    random; among ``nodes`` (a mask) when given."""
    if not len(problem.nodes):
        return None
    mine = np.ones(len(problem.nodes), dtype=bool) if nodes is None else nodes
    free_gpu = np.where(state.gpu > 0, state.gpu, 0).sum(axis=1)
    stranded = np.flatnonzero((free_gpu >= 1) & mine)
    if len(stranded):
        weights = free_gpu[stranded].astype(np.float64)
        seed = int(rng.choice(stranded, p=weights / weights.sum()))
    else:  # every GPU is taken: swaps may still place more valuable jobs; any node
        candidates = np.flatnonzero(mine)
        if not len(candidates):
            return None
        seed = int(rng.choice(candidates))
    same = np.flatnonzero((problem.node_model == problem.node_model[seed]) & mine)
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

    def sub_problem(self, hood: np.ndarray, rng: np.random.Generator) -> tuple[Problem | None, Allocation | None]:
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
            return None, None
        chosen = sorted({problem.job_index[p.job] for p in on_hood} | set(candidates))
        sub_jobs = tuple(problem.jobs[j] for j in chosen)
        sub_nodes = tuple(problem.nodes[n] for n in hood.tolist())
        fixed = Allocation(tuple(kept), method="fixed", status=Status.FEASIBLE)
        sub = Problem(
            sub_nodes, sub_jobs, current=fixed if kept else None, weights=problem.weights, gpu_models=problem.gpu_models
        )
        hint = Allocation(tuple(kept) + tuple(movable), method="current", status=Status.FEASIBLE)
        return sub, hint

    def keep_side(self, side: int) -> None:
        """Offer only the jobs left out whose index has parity ``side`` (the other process offers the rest)."""
        for kind in list(self.left_out):
            members = {j for j in self.left_out[kind] if j % 2 == side}
            if members:
                self.left_out[kind] = members
            else:
                del self.left_out[kind]

    def replace(self, step: _Step, *, offer: bool = True) -> None:
        """The neighbourhood's placements (``step.before``) replaced by ``step.after``; the jobs it left out
        offered to later steps when ``offer``."""
        gone = set(step.before)
        for n in step.hood.tolist():
            name = self.problem.nodes[n].name
            kept = [p for p in self.by_node.get(name, ()) if p not in gone]
            if kept:
                self.by_node[name] = kept
            else:
                self.by_node.pop(name, None)
        placed = set()
        for p in step.after:
            self.by_node.setdefault(p.node, []).append(p)
            placed.add(p.job)
        for job in placed:
            self._placed(job)
        for job in step.jobs - placed:
            if job not in self.unplaced:
                u = Unplaced(job, Reason.INSUFFICIENT_CAPACITY, "left out by the neighbourhood search")
                self.unplaced[job] = u
                if offer:
                    self._left(u)

    def allocation(self, like: Allocation) -> Allocation:
        """The incumbent as an allocation (placements in the problem's job order), ``like``'s fields kept."""
        order = self.problem.job_index
        placements = sorted((p for ps in self.by_node.values() for p in ps), key=lambda p: (order[p.job], p.replica))
        unplaced = sorted(self.unplaced.values(), key=lambda u: order[u.job])
        return like.replace(placements=tuple(placements), unplaced=tuple(unplaced))


__all__ = ["LnsResult", "improve"]
