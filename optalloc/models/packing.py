"""Packing the units decoding gives a node type onto the type's nodes: the rules, and the repair.

Decoding (``optalloc.models.decode``) turns the program's counts into units — a whole-GPU replica, a
bundle of shares on one GPU, a CPU-only replica, a single-node block — and hands each node type's units
to :func:`pack_type`, which puts them on the type's nodes with a node-choice rule and returns what it
packed and what it missed. The fast rule (``balanced-heap``) keeps the type's nodes in heaps and costs
microseconds per unit at any size; the others score every node of the type with numpy per unit and are
tried, while time allows, when a type still loses units.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from optalloc.core import MILLI, ClusterState, Placement, PlacementRule
from optalloc.core.budget import Budget
from optalloc.core.state import placement_of


@dataclass
class Unit:
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
class Need:
    """CPU and memory per GPU that the GPU items still to pack on a type carry (the shape to keep free)."""

    cpu: int
    memory: int
    gpus: int

    @classmethod
    def of(cls, items: list[Unit]) -> Need:
        need = cls(0, 0, 0)
        for u in items:
            need.add(u, +1)
        return need

    def add(self, u: Unit, sign: int) -> None:
        slots = u.gpus + (1 if (u.fresh or u.level > 0) else 0)
        if slots:
            self.cpu += sign * u.cpu
            self.memory += sign * u.memory
            self.gpus += sign * slots

    def remove(self, u: Unit) -> None:
        self.add(u, -1)

    def ratios(self) -> tuple[float, float]:
        return (self.cpu / self.gpus, self.memory / self.gpus) if self.gpus > 0 else (0.0, 0.0)


def packing_order(u: Unit) -> tuple[int, ...]:
    """Multi-GPU units first (largest first), then every unit on one GPU — a whole GPU or a bundle of
    shares on one — by CPU then memory, most first, so that the CPU-hungry ones spread over the nodes
    before the lean ones fill what is left; CPU-only units last."""
    slots = u.gpus if u.gpus else (1 if (u.fresh or u.level > 0) else 0)
    return (-(slots if slots > 1 else 0), -u.block_shares, -min(slots, 1), -u.cpu, -u.memory)


#: Node-choice rules tried in turn on each node type until one packs every unit. ``balanced-heap`` is the
#: fast one (heaps of nodes, no per-unit pass over the type); the others score every node per unit.
PACKING_RULES = ("balanced-heap", "shortfall", "balanced-worst-fit", "slack", "cpu-worst-fit", "cpu-best-fit")


@dataclass
class Packed:
    """What one packing of a type did (on copies of the state): the placements per job index, the units
    it missed and the objective value they carry. (Not the state after it: nothing reads it, and sent
    from the polish's child process it was most of each message — 2.1 MB of 2.4 on the openb default
    list's largest type, 75 ms to read back, which held `auto` at 2 s up to 0.15 s past its budget.)"""

    placed: dict[int, list[Placement]]
    missed: list[Unit]
    lost_value: int


def pack_type(
    problem,  # type: ignore[no-untyped-def]
    state: ClusterState,
    full: np.ndarray,
    nodes: np.ndarray,
    items: list[Unit],
    rule: str,
    budget: Budget,
    reserve: float,
) -> Packed:
    """Pack ``items`` (in order) on ``nodes`` with ``rule``, on ``state`` and ``full`` (pass copies)."""
    placed: dict[int, list[Placement]] = defaultdict(list)
    if rule == "balanced-heap" and _heap_packable(problem, items):
        missed = _pack_heap(problem, state, full, nodes, items, placed, budget, reserve)
    else:
        missed = []
        need = Need.of(items)
        for i, unit in enumerate(items):
            if i % 16 == 0:  # a unit takes about half a millisecond (several on a loaded machine)
                budget.check(reserve)
            need.remove(unit)
            if not _pack(problem, state, full, nodes, unit, placed, need, rule):
                missed.append(unit)
        if missed:
            missed = _evict_for(problem, state, full, nodes, missed, placed, need, rule)
    lost_value = sum(int(problem.replica_value[j]) for unit in missed for j, _, _ in unit.members)
    return Packed(placed, missed, lost_value)


def _heap_packable(problem, items: list[Unit]) -> bool:  # type: ignore[no-untyped-def]
    """The heap rule handles units of single-replica jobs on whole GPUs, fresh GPUs or no GPU."""
    jobs = problem.jobs
    return all(
        not u.block_shares and u.level <= 0 and (len(u.members) == 1 or u.fresh) and jobs[u.members[0][0]].replicas == 1
        for u in items
        if u.members
    )


def _pack_heap(
    problem,  # type: ignore[no-untyped-def]
    state: ClusterState,
    full: np.ndarray,
    nodes: np.ndarray,
    items: list[Unit],
    placed: dict[int, list[Placement]],
    budget: Budget,
    reserve: float,
) -> list[Unit]:
    """Balanced worst fit with heaps: each unit on a GPU goes to the node with the most room left (the
    smaller of its free CPU and memory, as shares of the node's) among those with enough free GPUs; CPU-only
    units last, to the node with the most room. Units come largest GPU demand first, then most CPU first
    (``packing_order``): the CPU-hungry units spread one per node before the lean ones fill the rest, so
    that no node is left with free GPUs and no CPU to feed them. Multi-GPU units take the node with the
    fewest free GPUs that holds them (best fit), to keep whole nodes for the biggest."""
    index = nodes.tolist()
    jobs = problem.jobs
    names = [problem.nodes[n].name for n in index]
    touched: list[tuple[int, int, int, int]] = []  # (node, GPU, milli, GPU memory) taken
    cpu = state.cpu[nodes].tolist()
    memory = state.memory[nodes].tolist()
    idle = [np.flatnonzero(row == MILLI).tolist() for row in state.gpu[nodes]]  # fully free GPU indices
    gpu_mem = state.gpu_mem[nodes]
    cap = problem.capacity[nodes]
    scale_cpu = [1.0 / max(int(v), 1) for v in cap[:, 0]]
    scale_mem = [1.0 / max(int(v), 1) for v in cap[:, 1]]

    def room(i: int) -> float:
        return min(cpu[i] * scale_cpu[i], memory[i] * scale_mem[i])

    version = [0] * len(index)
    # Nodes by their number of fully free GPUs (for the best fit of multi-GPU units), in index order.
    by_free: list[dict[int, None]] = [{} for _ in range(1 + max((len(g) for g in idle), default=0))]
    for i, gpus in enumerate(idle):
        by_free[len(gpus)][i] = None
    gpu_heap = [(-room(i), 0, i) for i in range(len(index)) if idle[i]]
    heapq.heapify(gpu_heap)
    missed: list[Unit] = []
    cpu_heap: list[tuple[float, int, int]] | None = None
    for count, unit in enumerate(items):
        if count % 256 == 0:
            budget.check(reserve)
        slots = unit.gpus + (1 if unit.fresh else 0)
        if slots > 1:
            # Best fit on whole GPUs: a node with the fewest free GPUs that holds the unit.
            pick = -1
            for count in range(slots, len(by_free)):
                pick = next((i for i in by_free[count] if cpu[i] >= unit.cpu and memory[i] >= unit.memory), -1)
                if pick >= 0:
                    break
            if pick < 0:
                missed.append(unit)
                continue
        elif slots == 1:
            pick = _pop_fitting(gpu_heap, version, unit, cpu, memory, room, idle, gpu_mem)
            if pick < 0:
                missed.append(unit)
                continue
        else:
            if cpu_heap is None:
                cpu_heap = [(-room(i), version[i], i) for i in range(len(index))]
                heapq.heapify(cpu_heap)
            pick = _pop_fitting(cpu_heap, version, unit, cpu, memory, room, None, gpu_mem)
            if pick < 0:
                missed.append(unit)
                continue
        # Commit: whole GPUs are the lowest free indices; a fresh bundle takes the highest free one.
        del by_free[len(idle[pick])][pick]
        if unit.gpus:
            per = unit.gpus // len(unit.members)
            taken = idle[pick][: unit.gpus]
            del idle[pick][: unit.gpus]
            gpus = [tuple(taken[m * per : (m + 1) * per]) for m in range(len(unit.members))]
        elif unit.fresh:
            g = idle[pick].pop()
            gpus = [(g,) for _ in unit.members]
        else:
            gpus = [() for _ in unit.members]
        node = names[pick]
        for (j, r, milli), gs in zip(unit.members, gpus, strict=True):
            placed[j].append(placement_of(jobs[j].name, r, node, gs, milli if gs else 0))
            for g in gs:
                touched.append((index[pick], g, milli, jobs[j].gpu_memory))
        by_free[len(idle[pick])][pick] = None
        cpu[pick] -= unit.cpu
        memory[pick] -= unit.memory
        version[pick] += 1
        if idle[pick]:
            heapq.heappush(gpu_heap, (-room(pick), version[pick], pick))
        if cpu_heap is not None:
            heapq.heappush(cpu_heap, (-room(pick), version[pick], pick))
    # Write the type's new state back in one pass.
    state.cpu[nodes] = cpu
    state.memory[nodes] = memory
    if touched:
        at = np.array(touched, dtype=np.int64)
        np.subtract.at(state.gpu, (at[:, 0], at[:, 1]), at[:, 2])
        np.subtract.at(state.gpu_mem, (at[:, 0], at[:, 1]), at[:, 3])
    full[nodes] = [len(g) for g in idle]
    return missed


#: Nodes the heap rule looks at for one unit before it gives up on it.
HEAP_TRIES = 48


def _pop_fitting(heap, version, unit: Unit, cpu, memory, room, idle, gpu_mem) -> int:  # type: ignore[no-untyped-def]
    """Pop nodes from ``heap`` (most room first) until one holds ``unit``; the others go back. -1: none."""
    aside = []
    pick = -1
    while heap and len(aside) < HEAP_TRIES:
        key, seen, i = heapq.heappop(heap)
        if seen != version[i]:
            continue  # stale entry: the node changed since
        if idle is not None and not idle[i]:
            continue  # no free GPU left: it leaves this heap
        if (
            cpu[i] >= unit.cpu
            and memory[i] >= unit.memory
            and (not unit.gpu_memory or idle is None or gpu_mem[i, idle[i][-1]] >= unit.gpu_memory)
        ):
            pick = i
            break
        aside.append((key, seen, i))
    for entry in aside:
        heapq.heappush(heap, entry)
    return pick


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
    still: list[Unit] = []
    evicted: list[Unit] = []
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
            evicted.append(Unit(problem.jobs[j].cpu, problem.jobs[j].memory, members=[(j, p.replica, 0)]))
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


def _pack(
    problem,
    state: ClusterState,
    full: np.ndarray,
    nodes: np.ndarray,
    unit: Unit,
    new: dict,
    need: Need,
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


def _gpus_for(state: ClusterState, n: int, unit: Unit) -> list[list[int]] | None:
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
    problem, state: ClusterState, full: np.ndarray, n: int, unit: Unit, gpus: list[list[int]], new: dict
) -> None:  # type: ignore[no-untyped-def]
    node = problem.nodes[n].name
    for (j, r, milli), gs in zip(unit.members, gpus, strict=True):
        job = problem.jobs[j]
        gpus_taken = tuple(int(g) for g in gs)
        p = placement_of(job.name, int(r), node, gpus_taken, int(milli) if gs else 0)
        state.cpu[n] -= job.cpu
        state.memory[n] -= job.memory
        for g in gpus_taken:
            state.gpu[n, g] -= p.gpu_milli
            state.gpu_mem[n, g] -= job.gpu_memory
        new[j].append(p)
    full[n] = int((state.gpu[n] == MILLI).sum())
