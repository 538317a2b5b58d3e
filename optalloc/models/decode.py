"""Decode a solution of the compressed program into concrete nodes and GPU indices.

Counts per (class, type) become jobs and replicas; the arc-flow of each type becomes GPU fill paths;
then, type by type, units are packed onto the type's nodes (largest GPU demand first, best fit on
whole GPUs, replicas of one job kept together unless it spreads). What cannot be packed (the
aggregated program relaxes per-node capacity when a type holds several nodes) is reported as
unplaced, for the caller to retry; the decoded allocation always respects every rule.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optalloc.core import MILLI, Allocation, ClusterState, Placement, PlacementRule, Reason, Status, Unplaced
from optalloc.core.budget import Budget, OutOfTime
from optalloc.models.classes import Compression
from optalloc.models.formulation import ArcFlow, Formulation
from optalloc.models.packing import PACKING_RULES, Packed, Unit, pack_type, packing_order

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    allocation: Allocation
    lost_replicas: int  # replicas the program placed that packing could not


#: Details of the jobs decoding leaves out: the program placed them but packing could not, or it did not.
LOST_IN_PACKING = "placed by the program but lost in packing"
NOT_CHOSEN = "the solver gave the capacity to other jobs"


def decode(
    form: Formulation,
    values: np.ndarray,
    *,
    method: str,
    status: Status,
    budget: Budget | None = None,
    reserve: float = 0.0,
    polish: bool = True,
) -> Decoded:
    """The allocation ``values`` describe: :func:`start` (every type packed with the fast rule), then,
    with ``polish``, :meth:`Decoding.polish` while ``budget`` has time (other rules and restarts for the
    units a type loses). When fewer than ``reserve`` seconds are left before the first pass is done,
    decoding stops (:class:`~optalloc.core.budget.OutOfTime`); after it, the answer is complete."""
    budget = budget if budget is not None else Budget()
    decoding = start(form, values, budget, reserve)
    if polish:
        decoding.polish(budget, reserve)
    return decoding.result(method, status)


def start(form: Formulation, values: np.ndarray, budget: Budget, reserve: float = 0.0) -> Decoding:
    """Pass 1 of decoding: every type packed with the fast rule, each on its own nodes (types share
    none): a complete answer in a fraction of the time the other rules take."""
    comp = form.compression
    problem = comp.problem
    state = ClusterState.of(problem, comp.fixed)
    full = (state.gpu == MILLI).sum(axis=1)
    kept: dict[int, list[Placement]] = defaultdict(list)
    units_by_type = _units_by_type(form, values, _chosen_jobs(form, values))
    running = problem.current.by_job() if problem.current is not None else {}
    types: list[_TypeTrials] = []
    for t, units in units_by_type.items():
        nodes = np.asarray(comp.types[t].nodes, dtype=np.int64)
        if running:
            # Running replicas the program keeps on their type stay exactly where they run.
            units = [u for u in units if not _keep_running(problem, comp, state, full, running, t, u, kept)]
        items = _bundle(form, t, values, units)
        # Largest GPU demand first; among one-GPU items the most CPU per GPU first; CPU-only last.
        items.sort(key=packing_order)
        first = pack_type(problem, state.copy(), full.copy(), nodes, items, PACKING_RULES[0], budget, reserve)
        types.append(_TypeTrials(nodes, items, first))
    return Decoding(comp, state, full, kept, types)


class Decoding:
    """A decoding past its first pass: per node type, the packings tried and the best of them."""

    def __init__(
        self,
        comp: Compression,
        state: ClusterState,
        full: np.ndarray,
        kept: dict[int, list[Placement]],
        types: list[_TypeTrials],
    ) -> None:
        self.comp, self.state, self.full, self.kept, self.types = comp, state, full, kept, types

    @property
    def lost_value(self) -> int:
        """The objective value of the units packing missed so far."""
        return sum(t.best.lost_value for t in self.types)

    def polish(self, budget: Budget, reserve: float = 0.0, *, parallel: bool = False) -> bool:
        """Pass 2, while the budget has time for another try: the types that lost units, the most value
        first, packed again with the other rules and, on small types, seeded restarts shuffling items of
        equal GPU demand; each type keeps its best try (the first of the least lost value). Out of time,
        every type keeps what it has. Whether any type packs better now.

        ``parallel``: every other try (in that order, across types) is made by a forked child process,
        which sends each better packing as it finds it (tries are independent: each packs its type from
        the state before it, and types share no node). Splitting tries rather than types keeps both
        processes busy when one type holds most of the work (on the openb lists, the 549 G2 nodes: five
        tries of half a second each)."""
        before = self.lost_value
        todo = sorted((x for x in self.types if x.best.missed), key=lambda x: -x.best.lost_value)
        if not parallel or sum(x.count_tries() for x in todo) < 2:
            self._polish(todo, budget, reserve)
            return self.lost_value < before
        from optalloc.models.forked import Stream

        number = {id(x): i for i, x in enumerate(self.types)}
        first = 0
        for trials in todo:  # try i of the whole sequence is made by process i % 2
            trials.share(side=0, first=first)
            first += trials.count_tries()

        def helper_work(send: Callable[[object], None]) -> None:  # in the child
            def better(trials: _TypeTrials) -> None:
                send((number[id(trials)], trials.best_try, trials.best))

            for trials in todo:
                trials.share(side=1, first=trials.first_try)
            self._polish(todo, budget.detached(), reserve + POLISH_MARGIN, on_better=better)

        def take(messages: list[object]) -> None:
            for i, index, packed in messages:  # type: ignore[misc]
                self.types[i].offer(index, packed)

        try:
            helper = Stream(helper_work)
        except OSError as error:  # no process to spare (a limit on processes, or on memory): polish alone
            log.warning("polishing in one process: %s", error)
            for trials in todo:
                trials.share(side=None)
            self._polish(todo, budget, reserve)
            return self.lost_value < before
        try:
            for trials in todo:
                take(helper.receive())
                if not self._polish([trials], budget, reserve):
                    break
            while helper.running and not budget.expired(reserve):
                take(helper.receive(wait=min(0.05, max(0.0, budget.left() - reserve))))
        finally:
            take(helper.close())
        return self.lost_value < before

    def _polish(
        self,
        todo: list[_TypeTrials],
        budget: Budget,
        reserve: float,
        on_better: Callable[[_TypeTrials], None] | None = None,
    ) -> bool:
        """Polish the types of ``todo`` in turn; False when the time ran out."""
        try:
            for trials in todo:
                trials.improve(self.comp.problem, self.state, self.full, budget, reserve, on_better=on_better)
        except OutOfTime:
            return False
        return True

    def result(self, method: str, status: Status) -> Decoded:
        """The allocation of the best packing of every type so far."""
        comp = self.comp
        problem = comp.problem
        new: dict[int, list[Placement]] = defaultdict(list, {j: list(ps) for j, ps in self.kept.items()})
        failed: set[int] = set()
        lost = 0
        for trials in self.types:
            for j, ps in trials.best.placed.items():
                new[j].extend(ps)
            for unit in trials.best.missed:
                failed.update(j for j, _, _ in unit.members)
                lost += len(unit.members)
        # Jobs left below their minimum replicas by packing are withdrawn entirely.
        for j in sorted(failed):
            job = problem.jobs[j]
            if len(new[j]) < (job.min_replicas or job.replicas):
                new.pop(j, None)
            else:
                failed.discard(j)
        placements: list[Placement] = list(comp.fixed.placements)
        for j in sorted(new):
            placements.extend(sorted(new[j], key=lambda p: p.replica))
        placed = {problem.jobs[j].name for j in new} | comp.fixed.placed_jobs
        unplaced = []
        for j in comp.unhostable:
            unplaced.append(Unplaced(problem.jobs[j].name, Reason.FITS_NO_NODE, _why_unhostable(problem, j)))
        for j, job in enumerate(problem.jobs):
            if job.name in placed or j in comp.unhostable:
                continue
            detail = LOST_IN_PACKING if j in failed else NOT_CHOSEN
            unplaced.append(Unplaced(job.name, Reason.INSUFFICIENT_CAPACITY, detail))
        alloc = Allocation(tuple(placements), tuple(unplaced), method=method, status=status)
        return Decoded(alloc, lost)


#: Seconds before the polish's end at which its child process stops, so that its last packing arrives.
POLISH_MARGIN = 0.03
#: Types of at most this many nodes that still lose units get this many seeded restarts.
RESTART_NODES = 32
RESTARTS = 8
#: Seconds a scoring rule takes per unit on an unloaded machine (it scores every node of the type with
#: numpy per unit; the heap rule costs a tenth of it): the forecast of a first try with such a rule.
PACK_PER_UNIT = 60e-6


class _TypeTrials:
    """The packings tried on one node type (pass 2 of :func:`decode`) and the best of them."""

    def __init__(self, nodes: np.ndarray, items: list[Unit], first: Packed) -> None:
        self.nodes, self.items, self.best = nodes, items, first
        self.best_try = -1  # which try gave ``best`` (-1: the first pass); ties go to the earliest
        self.tries: list[tuple[int, str, list[Unit]]] | None = None  # the tries left, made on the first improve
        self.last = 0.0  # seconds the last try took
        self.side: int | None = None  # with a second process: the parity of the tries this one makes
        self.first_try = 0  # the number of this type's first try in the whole polish

    def count_tries(self) -> int:
        """How many tries pass 2 makes on this type at most."""
        return len(PACKING_RULES) - 1 + (RESTARTS if len(self.nodes) <= RESTART_NODES else 0)

    def share(self, side: int | None, first: int = 0) -> None:
        """Make only the tries ``i`` with ``(first + i) % 2 == side`` (None: every try); the other process
        makes the rest."""
        self.side, self.first_try = side, first

    def offer(self, index: int, packed: Packed) -> None:
        """Another process's try ``index`` of this type: kept when it loses less (or as much, made earlier)."""
        if (packed.lost_value, index) < (self.best.lost_value, self.best_try):
            self.best, self.best_try = packed, index

    def _all_tries(self) -> list[tuple[int, str, list[Unit]]]:
        tries = [(rule, self.items) for rule in PACKING_RULES[1:]]
        if len(self.nodes) <= RESTART_NODES:
            rng = np.random.default_rng(len(self.items))
            demand = [-(u.gpus + u.block_shares) for u in self.items]
            for attempt in range(RESTARTS):
                keys = rng.random(len(self.items))
                shuffled = [self.items[i] for i in np.lexsort((keys, demand))]
                tries.append((PACKING_RULES[attempt % len(PACKING_RULES)], shuffled))
        return [(i, rule, items) for i, (rule, items) in enumerate(tries)]

    def improve(  # type: ignore[no-untyped-def]
        self,
        problem,
        state: ClusterState,
        full: np.ndarray,
        budget: Budget,
        reserve: float,
        on_better: Callable[[_TypeTrials], None] | None = None,
    ) -> None:
        """Other rules, then (small types) seeded restarts, while each next try is expected to fit in the
        budget (as long as the last try took; before the first, the unloaded estimate stretched by the
        pace). ``state`` and ``full`` are the cluster before this type is packed; they are not changed.
        A later call goes on with the tries left."""
        if self.tries is None:
            self.tries = self._all_tries()
            self.last = PACK_PER_UNIT * len(self.items) * budget.pace
        while self.tries:
            if not self.best.missed or budget.expired(reserve + 1.5 * self.last):
                return
            index, rule, items = self.tries.pop(0)
            if self.side is not None and (self.first_try + index) % 2 != self.side:
                continue  # the other process makes this try
            t0 = budget.clock()
            trial = pack_type(problem, state.copy(), full.copy(), self.nodes, items, rule, budget, reserve)
            self.last = budget.clock() - t0
            if (trial.lost_value, index) < (self.best.lost_value, self.best_try):
                self.best, self.best_try = trial, index
                if on_better is not None:
                    on_better(self)


def _keep_running(problem, comp, state: ClusterState, full: np.ndarray, running: dict, t: int, unit, new: dict) -> bool:  # type: ignore[no-untyped-def]
    """Put a unit of a running job back on its current node and GPUs when that node is of type t and has room."""
    _, members = unit
    before = {p.replica: p for p in running.get(problem.jobs[members[0][0]].name, ())}
    places = [before.get(r) for _, r in members]
    if any(p is None or comp.node_type[problem.node_index[p.node]] != t for p in places):
        return False
    trial = state.copy()
    for p in places:
        trial.apply(p, sign=-1)
    touched = [problem.node_index[p.node] for p in places]
    if (trial.cpu[touched] < 0).any() or (trial.memory[touched] < 0).any() or (trial.gpu[touched] < -1).any():
        return False
    if (trial.gpu_mem[touched] < 0).any() or any(
        (trial.gpu[n][list(p.gpus)] < 0).any() for n, p in zip(touched, places, strict=True)
    ):
        return False
    for n, p in zip(touched, places, strict=True):
        state.apply(p, sign=-1)
        new[problem.job_index[p.job]].append(p)
        full[n] = int((state.gpu[n] == MILLI).sum())
    return True


def _why_unhostable(problem, j: int) -> str:  # type: ignore[no-untyped-def]
    job = problem.jobs[j]
    if not problem.allowed_nodes(j).any():
        return "no node passes its GPU model or node selector constraints"
    return f"no node can hold {'its whole gang' if job.replicas > 1 else 'one replica'} even when empty"


def _chosen_jobs(form: Formulation, values: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """Per class: the placed jobs (in arrival order) and how many replicas each gets."""
    comp = form.compression
    problem = comp.problem
    out: dict[int, list[tuple[int, int]]] = {}
    taken: set[int] = set()  # jobs already given to a class of the same pool
    for k, c in enumerate(comp.classes):
        count = int(values[form.placed[k]])
        if count <= 0:
            continue
        free = [j for j in c.jobs if j not in taken] if c.pool >= 0 else list(c.jobs)
        jobs = sorted(free, key=lambda j: (problem.jobs[j].arrival, j))[:count]
        if c.pool >= 0:
            taken.update(jobs)
        if form.replicas[k] is None:
            out[k] = [(j, c.replicas) for j in jobs]
            continue
        total = int(values[form.replicas[k]])
        per = [c.min_replicas] * len(jobs)
        extra = total - sum(per)
        i = 0
        while extra > 0 and any(n < c.replicas for n in per):
            if per[i] < c.replicas:
                per[i] += 1
                extra -= 1
            i = (i + 1) % len(per)
        out[k] = list(zip(jobs, per, strict=True))
    return out


def _units_by_type(
    form: Formulation, values: np.ndarray, chosen: dict[int, list[tuple[int, int]]]
) -> dict[int, list[tuple[int, list[tuple[int, int]]]]]:
    """Per type: (class, [(job, replica), ...]) for each unit the program put there."""
    comp = form.compression
    out: dict[int, list[tuple[int, list[tuple[int, int]]]]] = defaultdict(list)
    types_of: dict[int, list[int]] = defaultdict(list)
    for (k, t), var in form.x.items():
        if values[var] > 0:
            types_of[k].append(t)
    for k, jobs in chosen.items():
        c = comp.classes[k]
        single = c.placement is PlacementRule.SINGLE_NODE
        queue = (
            [[(j, r) for r in range(n)] for j, n in jobs] if single else [[(j, r)] for j, n in jobs for r in range(n)]
        )
        home = _home_types(comp, c) if c.running else {}
        if not home:
            first = 0
            for t in types_of[k]:
                n = min(int(values[form.x[(k, t)]]), len(queue) - first)
                out[t].extend((k, unit) for unit in queue[first : first + n])
                first += n
            continue
        for t in types_of[k]:
            for _ in range(int(values[form.x[(k, t)]])):
                if not queue:
                    break
                # Running replicas go first to the type where they run now.
                pick = next((i for i, unit in enumerate(queue) if home.get(unit[0]) == t), 0)
                out[t].append((k, queue.pop(pick)))
    return out


def _home_types(comp, c) -> dict[tuple[int, int], int]:  # type: ignore[no-untyped-def]
    """(job, replica) -> node type it runs on now, for the jobs of a movable running class."""
    problem = comp.problem
    by_job = problem.current.by_job() if problem.current is not None else {}
    out = {}
    for j in c.jobs:
        for p in by_job.get(problem.jobs[j].name, ()):
            out[(j, p.replica)] = int(comp.node_type[problem.node_index[p.node]])
    return out


def _paths(flow: ArcFlow, values: np.ndarray) -> list[tuple[int, list[int]]]:
    """Decompose the arc-flow of a type into GPU paths: (start level, sizes placed in order)."""
    arcs: dict[int, list[list[int]]] = defaultdict(list)  # level -> [[size, remaining], ...]
    for (a, s), v in flow.arcs.items():
        if values[v] > 0:
            arcs[a].append([s, int(values[v])])
    ends = {a: int(values[v]) for a, v in flow.ends.items()}
    starts = [(0, int(values[flow.fresh])), *sorted(flow.starts.items())]
    out = []
    for level0, count in starts:
        for _ in range(count):
            level, sizes = level0, []
            while True:
                # Any greedy walk is a valid path: conservation guarantees an arc or an end ahead.
                nxt = next((arc for arc in arcs.get(level, ()) if arc[1] > 0), None)
                if nxt is None:
                    break
                nxt[1] -= 1
                sizes.append(nxt[0])
                level += nxt[0]
            if ends.get(level, 0) > 0:
                ends[level] -= 1
            if sizes:
                out.append((level0, sizes))
    return out


def _bundle(
    form: Formulation, t: int, values: np.ndarray, units: list[tuple[int, list[tuple[int, int]]]]
) -> list[Unit]:
    """Turn the units of type t into packable items; shares ride on the GPU paths of the type's arc-flow."""
    comp = form.compression
    problem = comp.problem
    out: list[Unit] = []
    shares: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # size -> [(job, replica, class)]
    for k, members in units:
        c = comp.classes[k]
        n = len(members)
        if c.share and c.placement is PlacementRule.SINGLE_NODE:
            out.append(
                Unit(
                    c.cpu * n,
                    c.memory * n,
                    gpu_memory=c.gpu_memory,
                    block_shares=n,
                    share=c.share,
                    members=[(j, r, c.share) for j, r in members],
                )
            )
        elif c.share:
            j, r = members[0]
            shares[c.share].append((j, r, k))
        else:
            out.append(
                Unit(
                    c.cpu * n,
                    c.memory * n,
                    gpus=c.gpus * n,
                    members=[(j, r, MILLI if c.gpus else 0) for j, r in members],
                )
            )
    flow = form.flows.get(t)
    if flow is not None:
        paths = _paths(flow, values)
        bundles = [Unit(0, 0, level=level if level else -1, fresh=level == 0) for level, _ in paths]
        # Fill the slots size by size, largest first, giving the most CPU-hungry share to the bundle
        # with the least CPU so far (longest-processing-time), so that bundles stay alike and fit nodes.
        slots: dict[int, list[int]] = defaultdict(list)
        for b, (_, sizes) in enumerate(paths):
            for size in sizes:
                slots[size].append(b)
        for size in sorted(slots, reverse=True):
            pool = sorted(shares.get(size, []), key=lambda m: comp.classes[m[2]].cpu)
            for b in sorted(slots[size], key=lambda b: bundles[b].cpu):
                if not pool:
                    break
                j, r, k = pool.pop()
                c = comp.classes[k]
                bundle = bundles[b]
                bundle.cpu += c.cpu
                bundle.memory += c.memory
                bundle.gpu_memory += c.gpu_memory
                bundle.members.append((j, r, size))
            shares[size] = pool
        out.extend(b for b in bundles if b.members)
    # Shares the paths did not take (should not happen with an exact flow): one bundle each.
    for s, rest in shares.items():
        for j, r, k in rest:
            c = comp.classes[k]
            out.append(Unit(c.cpu, c.memory, fresh=True, gpu_memory=c.gpu_memory, members=[(j, r, s)]))
    del problem
    return out
