"""Decode a solution of the compressed program into concrete nodes and GPU indices.

Counts per (class, type) become jobs and replicas; the arc-flow of each type becomes GPU fill paths;
then, type by type, units are packed onto the type's nodes (largest GPU demand first, best fit on
whole GPUs, replicas of one job kept together unless it spreads). What cannot be packed (the
aggregated program relaxes per-node capacity when a type holds several nodes) is reported as
unplaced, for the caller to retry; the decoded allocation always respects every rule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from optalloc.core import MILLI, Allocation, ClusterState, Placement, PlacementRule, Reason, Status, Unplaced
from optalloc.core.budget import Budget
from optalloc.models.formulation import ArcFlow, Formulation
from optalloc.models.packing import PACKING_RULES, Packed, Unit, pack_type, packing_order


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
        items.sort(key=packing_order)
        best: Packed | None = None
        for rule in PACKING_RULES:
            t0 = budget.clock()
            trial = pack_type(problem, state.copy(), full.copy(), nodes, items, rule, budget, reserve)
            if best is None or trial.lost_value < best.lost_value:
                best = trial
            # Another rule only while there is time for one more pass over the type.
            if not trial.missed or budget.expired(reserve + 1.5 * (budget.clock() - t0)):
                break
        assert best is not None
        if best.missed and len(nodes) <= RESTART_NODES:
            # Small types that still lose units: seeded restarts, shuffling items of equal GPU demand.
            rng = np.random.default_rng(len(items))
            for attempt in range(RESTARTS):
                t0 = budget.clock()
                keys = rng.random(len(items))
                shuffled = [items[i] for i in np.lexsort((keys, [-(u.gpus + u.block_shares) for u in items]))]
                trial = pack_type(
                    problem,
                    state.copy(),
                    full.copy(),
                    nodes,
                    shuffled,
                    PACKING_RULES[attempt % len(PACKING_RULES)],
                    budget,
                    reserve,
                )
                if trial.lost_value < best.lost_value:
                    best = trial
                if not best.missed or budget.expired(reserve + 1.5 * (budget.clock() - t0)):
                    break
        state.cpu[:], state.memory[:], state.gpu[:], state.gpu_mem[:] = (
            best.state.cpu,
            best.state.memory,
            best.state.gpu,
            best.state.gpu_mem,
        )
        full[:] = best.full
        for j, ps in best.placed.items():
            new[j].extend(ps)
        for unit in best.missed:
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


#: Types of at most this many nodes that still lose units get this many seeded restarts.
RESTART_NODES = 32
RESTARTS = 8


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
