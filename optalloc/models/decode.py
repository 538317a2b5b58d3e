"""Decode a solution of the compressed program into concrete nodes and GPU indices.

Counts per (class, type) become jobs and replicas; the arc-flow of each type becomes GPU fill paths;
then, type by type, units are packed onto the type's nodes (largest GPU demand first, best fit on
whole GPUs, replicas of one job kept together unless it spreads). What cannot be packed (the
aggregated program relaxes per-node capacity when a type holds several nodes) is reported as
unplaced, for the caller to retry; the decoded allocation always respects every rule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from optalloc.core import MILLI, Allocation, ClusterState, Placement, PlacementRule, Reason, Status, Unplaced
from optalloc.core.budget import Budget
from optalloc.models.formulation import ArcFlow, Formulation


@dataclass
class _Unit:
    """Something packed onto one node: a whole-GPU replica, a block, a bundle of shares on one GPU, a CPU replica."""

    cpu: int
    memory: int
    gpus: int = 0  # fully free GPUs it needs
    level: int = -1  # fill level of the partly used GPU it needs (bundles on partial GPUs)
    fresh: bool = False  # a bundle on a fully free GPU
    gpu_memory: int = 0
    members: list[tuple[int, int, int]] = field(default_factory=list)  # (job, replica, milli per GPU)
    block_shares: int = 0  # single-node sharing jobs: shares to fit on one node
    share: int = 0


@dataclass
class _Need:
    """CPU and memory per GPU that the GPU items still to pack on a type carry (the shape to keep free)."""

    cpu: int
    memory: int
    gpus: int

    @classmethod
    def of(cls, items: list[_Unit]) -> _Need:
        need = cls(0, 0, 0)
        for u in items:
            need.add(u, +1)
        return need

    def add(self, u: _Unit, sign: int) -> None:
        slots = u.gpus + (1 if (u.fresh or u.level > 0) else 0)
        if slots:
            self.cpu += sign * u.cpu
            self.memory += sign * u.memory
            self.gpus += sign * slots

    def remove(self, u: _Unit) -> None:
        self.add(u, -1)

    def ratios(self) -> tuple[float, float]:
        return (self.cpu / self.gpus, self.memory / self.gpus) if self.gpus > 0 else (0.0, 0.0)


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
) -> Decoded:
    """The allocation ``values`` describe. Alternative packing rules and restarts for the units a type
    loses run only while ``budget`` has time for them; past ``reserve`` seconds before its deadline the
    decoding stops (:class:`~optalloc.core.budget.OutOfTime`)."""
    budget = budget if budget is not None else Budget()
    comp = form.compression
    problem = comp.problem
    state = ClusterState.of(problem, comp.fixed)
    full = (state.gpu == MILLI).sum(axis=1)
    placements: list[Placement] = list(comp.fixed.placements)
    new: dict[int, list[Placement]] = defaultdict(list)
    failed: set[int] = set()
    chosen = _chosen_jobs(form, values)
    units_by_type = _units_by_type(form, values, chosen)
    lost = 0
    running = problem.current.by_job() if problem.current is not None else {}
    for t, units in units_by_type.items():
        nodes = np.asarray(comp.types[t].nodes, dtype=np.int64)
        if running:
            # Running replicas the program keeps on their type stay exactly where they run.
            units = [u for u in units if not _keep_running(problem, comp, state, full, running, t, u, new)]
        items = _bundle(form, t, values, units)
        # Largest GPU demand first; among one-GPU items the most CPU per GPU first; CPU-only last.
        items.sort(key=lambda u: (-u.gpus, -u.block_shares, -(u.fresh or u.level > 0 or u.gpus > 0), -u.cpu, -u.memory))
        best = None
        for rule in PACKING_RULES:
            t0 = budget.clock()
            trial = _pack_type(problem, state.copy(), full.copy(), nodes, items, rule, budget, reserve)
            if best is None or trial[3] < best[3]:
                best = trial
            # Another rule only while there is time for one more pass over the type.
            if trial[3] == 0 or budget.expired(reserve + 1.5 * (budget.clock() - t0)):
                break
        assert best is not None
        if best[3] and len(nodes) <= RESTART_NODES:
            # Small types that still lose units: seeded restarts, shuffling items of equal GPU demand.
            rng = np.random.default_rng(len(items))
            for attempt in range(RESTARTS):
                t0 = budget.clock()
                keys = rng.random(len(items))
                shuffled = [items[i] for i in np.lexsort((keys, [-(u.gpus + u.block_shares) for u in items]))]
                trial = _pack_type(
                    problem,
                    state.copy(),
                    full.copy(),
                    nodes,
                    shuffled,
                    PACKING_RULES[attempt % len(PACKING_RULES)],
                    budget,
                    reserve,
                )
                if trial[3] < best[3]:
                    best = trial
                if best[3] == 0 or budget.expired(reserve + 1.5 * (budget.clock() - t0)):
                    break
        trial_state, trial_full, placed, _, missed = best
        state.cpu[:], state.memory[:], state.gpu[:], state.gpu_mem[:] = (
            trial_state.cpu,
            trial_state.memory,
            trial_state.gpu,
            trial_state.gpu_mem,
        )
        full[:] = trial_full
        for j, ps in placed.items():
            new[j].extend(ps)
        for unit in missed:
            failed.update(j for j, _, _ in unit.members)
            lost += len(unit.members)
    # Jobs left below their minimum replicas by packing are withdrawn entirely.
    for j in sorted(failed):
        job = problem.jobs[j]
        if len(new[j]) < (job.min_replicas or job.replicas):
            for p in new.pop(j, []):
                state.apply(p, sign=+1)
        else:
            failed.discard(j)
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


#: Types of at most this many nodes that still lose units get this many seeded restarts.
RESTART_NODES = 32
RESTARTS = 8

#: Node-choice rules tried in turn on each node type until one packs every unit.
PACKING_RULES = ("shortfall", "balanced-worst-fit", "slack", "cpu-worst-fit", "cpu-best-fit")


def _pack_type(  # type: ignore[no-untyped-def]
    problem,
    state: ClusterState,
    full: np.ndarray,
    nodes: np.ndarray,
    items: list[_Unit],
    rule: str,
    budget: Budget,
    reserve: float,
):
    """Pack ``items`` on ``nodes`` with ``rule`` (on copies); returns the state, placements, lost value, misses."""
    placed: dict[int, list[Placement]] = defaultdict(list)
    missed: list[_Unit] = []
    need = _Need.of(items)
    lost_value = 0
    for i, unit in enumerate(items):
        if i % 64 == 0:
            budget.check(reserve)
        need.remove(unit)
        if not _pack(problem, state, full, nodes, unit, placed, need, rule):
            missed.append(unit)
    if missed:
        missed = _evict_for(problem, state, full, nodes, missed, placed, need, rule)
    lost_value = sum(int(problem.replica_value[j]) for unit in missed for j, _, _ in unit.members)
    return state, full, placed, lost_value, missed


def _evict_for(problem, state, full, nodes, missed, placed, need, rule):  # type: ignore[no-untyped-def]
    """Repair: a GPU unit that found no node takes one whose only shortage is CPU or memory held by
    CPU-only pods worth less than it; those pods then look for room elsewhere (or are left out).

    Packing a type whose GPUs are all spoken for, CPU-only pods are the flexible part: moving them is
    what lets the CPU-hungry GPU units fit.
    """
    index = problem.node_index
    value = problem.replica_value
    movable: dict[int, list[tuple[int, Placement]]] = defaultdict(list)  # node -> CPU-only single pods on it
    for j, ps in placed.items():
        if len(ps) == 1 and not ps[0].gpus and problem.jobs[j].replicas == 1:
            movable[index[ps[0].node]].append((j, ps[0]))
    still: list[_Unit] = []
    evicted: list[_Unit] = []
    order = sorted(missed, key=lambda u: -sum(int(value[j]) for j, _, _ in u.members))
    for unit in order:
        worth = sum(int(value[j]) for j, _, _ in unit.members)
        slots = unit.gpus + (1 if unit.fresh else 0)
        if not (slots or unit.level > 0) or unit.block_shares or len({m[0] for m in unit.members}) != 1:
            still.append(unit)
            continue
        best = None
        room = full[nodes] >= slots if slots else (state.gpu[nodes] == MILLI - unit.level).any(axis=1)
        for n in nodes[room].tolist():
            short_cpu = unit.cpu - int(state.cpu[n])
            short_mem = unit.memory - int(state.memory[n])
            pods = sorted(movable.get(n, ()), key=lambda jp: -problem.jobs[jp[0]].cpu)
            out, cost = [], 0
            for j, p in pods:
                if short_cpu <= 0 and short_mem <= 0:
                    break
                out.append((j, p))
                cost += int(value[j])
                short_cpu -= problem.jobs[j].cpu
                short_mem -= problem.jobs[j].memory
            if short_cpu <= 0 and short_mem <= 0 and out and cost < worth and (best is None or cost < best[0]):
                best = (cost, n, out)
        if best is None:
            still.append(unit)
            continue
        _, n, out = best
        for j, p in out:
            state.apply(p, sign=+1)
            placed[j].remove(p)
            if not placed[j]:
                del placed[j]
            movable[n].remove((j, p))
            evicted.append(_Unit(problem.jobs[j].cpu, problem.jobs[j].memory, members=[(j, p.replica, 0)]))
        gpus = _gpus_for(state, n, unit)
        if gpus is None:  # cannot happen: the GPU room was checked; put the pods back
            for j, p in out:
                state.apply(p, sign=-1)
                placed[j].append(p)
            evicted = evicted[: len(evicted) - len(out)]
            still.append(unit)
            continue
        _commit(problem, state, full, n, unit, gpus, placed)
    for unit in evicted:
        if not _pack(problem, state, full, nodes, unit, placed, need, rule):
            still.append(unit)
    return still


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
    for k, jobs in chosen.items():
        c = comp.classes[k]
        single = c.placement is PlacementRule.SINGLE_NODE
        queue = (
            [[(j, r) for r in range(n)] for j, n in jobs] if single else [[(j, r)] for j, n in jobs for r in range(n)]
        )
        types = [t for (kk, t) in form.x if kk == k and values[form.x[(kk, t)]] > 0]
        home = _home_types(comp, c) if c.running else {}
        for t in types:
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
) -> list[_Unit]:
    """Turn the units of type t into packable items; shares ride on the GPU paths of the type's arc-flow."""
    comp = form.compression
    problem = comp.problem
    out: list[_Unit] = []
    shares: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # size -> [(job, replica, class)]
    for k, members in units:
        c = comp.classes[k]
        n = len(members)
        if c.share and c.placement is PlacementRule.SINGLE_NODE:
            out.append(
                _Unit(
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
                _Unit(
                    c.cpu * n,
                    c.memory * n,
                    gpus=c.gpus * n,
                    members=[(j, r, MILLI if c.gpus else 0) for j, r in members],
                )
            )
    flow = form.flows.get(t)
    if flow is not None:
        paths = _paths(flow, values)
        bundles = [_Unit(0, 0, level=level if level else -1, fresh=level == 0) for level, _ in paths]
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
            out.append(_Unit(c.cpu, c.memory, fresh=True, gpu_memory=c.gpu_memory, members=[(j, r, s)]))
    del problem
    return out


def _pack(
    problem,
    state: ClusterState,
    full: np.ndarray,
    nodes: np.ndarray,
    unit: _Unit,
    new: dict,
    need: _Need,
    rule: str = "shortfall",
) -> bool:  # type: ignore[no-untyped-def]
    """Place ``unit`` on the best node of ``nodes``; update the state; False when no node can take it."""
    ok = (state.cpu[nodes] >= unit.cpu) & (state.memory[nodes] >= unit.memory)
    if unit.gpus:
        ok &= full[nodes] >= unit.gpus
    elif unit.fresh:
        ok &= full[nodes] >= 1
        if unit.gpu_memory:
            ok &= ((state.gpu[nodes] == MILLI) & (state.gpu_mem[nodes] >= unit.gpu_memory)).any(axis=1)
    elif unit.level > 0:
        match = state.gpu[nodes] == MILLI - unit.level
        if unit.gpu_memory:
            match &= state.gpu_mem[nodes] >= unit.gpu_memory
        ok &= match.any(axis=1)
    job = problem.jobs[unit.members[0][0]] if unit.members else None
    hosting = np.zeros(len(nodes), dtype=bool)
    if job is not None and job.replicas > 1 and unit.block_shares == 0 and len({m[0] for m in unit.members}) == 1:
        mine = {problem.node_index[p.node] for p in new.get(unit.members[0][0], ())}
        if mine:
            hosting = np.isin(nodes, list(mine))
            if job.placement is PlacementRule.SPREAD:
                ok &= ~hosting
    candidates = np.flatnonzero(ok)
    if not len(candidates):
        return False
    # Prefer nodes the job already uses; then keep each node able to feed its free GPUs: after the
    # placement its free CPU and memory should cover its free GPUs at the CPU and memory per GPU that
    # the items still to pack carry (a shortfall strands GPUs); then the best fit on whole GPUs, then CPU.
    at = nodes[candidates]
    after = full[at] - unit.gpus - (1 if unit.fresh else 0)
    cpu_after = state.cpu[at] - unit.cpu
    mem_after = state.memory[at] - unit.memory
    per_cpu, per_mem = need.ratios()
    cap = problem.capacity[at]
    shortfall = np.maximum(0.0, per_cpu * after - cpu_after) / np.maximum(cap[:, 0], 1) + np.maximum(
        0.0, per_mem * after - mem_after
    ) / np.maximum(cap[:, 1], 1)
    if not (unit.gpus or unit.fresh or unit.level > 0):
        after = np.zeros_like(after)
    if rule == "shortfall":
        order = np.lexsort((cpu_after, after, np.round(shortfall, 3), ~hosting[candidates]))
    elif rule == "slack":
        # Spread the CPU-hungry items: the node left with the most CPU beyond what its free GPUs will need.
        slack = (cpu_after - per_cpu * after) / np.maximum(cap[:, 0], 1) + (mem_after - per_mem * after) / np.maximum(
            cap[:, 1], 1
        )
        order = np.lexsort((after, -slack, ~hosting[candidates]))
    elif rule == "cpu-best-fit":
        order = np.lexsort((after, cpu_after, ~hosting[candidates]))
    elif rule == "balanced-worst-fit":
        # Worst fit on the scarcer of CPU and memory: keep both spread evenly over the type's nodes.
        room = np.minimum(cpu_after / np.maximum(cap[:, 0], 1), mem_after / np.maximum(cap[:, 1], 1))
        order = np.lexsort((after, -room, ~hosting[candidates]))
    else:
        order = np.lexsort((after, -cpu_after, ~hosting[candidates]))
    for pick in candidates[order]:
        n = int(nodes[pick])
        gpus = _gpus_for(state, n, unit)
        if gpus is None:
            continue
        _commit(problem, state, full, n, unit, gpus, new)
        return True
    return False


def _gpus_for(state: ClusterState, n: int, unit: _Unit) -> list[list[int]] | None:
    """GPU indices on node n for each member of the unit, or None if they do not fit."""
    gpu = state.gpu[n]
    if unit.block_shares:
        free = gpu.copy()
        mem = state.gpu_mem[n].copy()
        out = []
        for _ in unit.members:
            fits = np.flatnonzero((free >= unit.share) & (mem >= unit.gpu_memory))
            if not len(fits):
                return None
            g = int(fits[np.argmin(free[fits])])
            free[g] -= unit.share
            mem[g] -= unit.gpu_memory
            out.append([g])
        return out
    if unit.gpus:
        idle = list(np.flatnonzero(gpu == MILLI))
        out = []
        per = unit.gpus // len(unit.members)
        for _ in unit.members:
            out.append([int(g) for g in idle[:per]])
            idle = idle[per:]
        return out
    if unit.fresh or unit.level > 0:
        target = MILLI if unit.fresh else MILLI - unit.level
        fits = np.flatnonzero((gpu == target) & (state.gpu_mem[n] >= unit.gpu_memory))
        if not len(fits):
            return None
        g = int(fits[-1] if unit.fresh else fits[0])
        return [[g] for _ in unit.members]
    return [[] for _ in unit.members]


def _commit(
    problem, state: ClusterState, full: np.ndarray, n: int, unit: _Unit, gpus: list[list[int]], new: dict
) -> None:  # type: ignore[no-untyped-def]
    node = problem.nodes[n].name
    for (j, r, milli), gs in zip(unit.members, gpus, strict=True):
        job = problem.jobs[j]
        p = Placement(job.name, r, node, tuple(gs), milli if gs else 0)
        state.apply(p, sign=-1)
        new[j].append(p)
    full[n] = int((state.gpu[n] == MILLI).sum())
