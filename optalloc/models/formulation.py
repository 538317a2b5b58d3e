"""The allocation program over node types and job classes, written once as data.

Index sets: job classes ``k`` (``optalloc.models.classes``), node types ``t`` with ``N_t`` nodes each,
share sizes ``s`` and GPU fill levels ``a`` in milli-GPU (0..1000).

Variables (all integer):
  p[k]     jobs of class k placed (0..|k|)
  r[k]     replicas of class k placed (elastic classes only; otherwise R_k p[k])
  x[k,t]   units of class k on type t: replicas, or whole jobs for single-node classes
  u[t]     fully free GPUs of type t opened for sharing
  y[t,a,s] GPUs of type t that receive a share of size s at fill level a (an arc a -> a+s)
  e[t,a]   GPUs of type t whose final fill level is a
  z[k,t]   (exact mode, multi-replica job k) whether job k uses node t

Objective (maximised): sum_k value_k * replicas_k
  + migration * (replicas of movable running jobs on their origin type - movable replicas)
  - fragmentation * (GPUs left partly used)
  - spread * (nodes used beyond the first by multi-replica jobs; exact mode only, else relaxed to 0)
Fixed placements contribute their value and their partly used GPUs as constants, so the program's
objective is directly comparable with ``optalloc.core.evaluate``.

Every constraint holds for every valid allocation, so the program is a relaxation of the problem
(exact per node when each type holds one node) and its bound is a valid upper bound.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from optalloc.core import MILLI, Allocation, PlacementRule
from optalloc.models.classes import Compression, JobClass, NodeType
from optalloc.models.program import Program

#: Cardinality cuts per resource and node type: at most m units larger than 1/(m+1) of a node, m = 1..8.
CARDINALITY_CUTS = 8


@dataclass
class ArcFlow:
    """The share packing of one node type as a flow over GPU fill levels (arc-flow, Valerio de Carvalho)."""

    sizes: tuple[int, ...]  # share sizes, largest first
    fresh: int  # variable u[t]
    starts: dict[int, int]  # fill level -> partly used GPUs starting there (a constant count)
    arcs: dict[tuple[int, int], int] = field(default_factory=dict)  # (level, size) -> variable y
    ends: dict[int, int] = field(default_factory=dict)  # level -> variable e


@dataclass
class Formulation:
    compression: Compression
    program: Program
    placed: list[int]  # p[k]
    replicas: list[int | None]  # r[k] for elastic classes
    x: dict[tuple[int, int], int]  # (k, t) -> variable
    flows: dict[int, ArcFlow]
    weights: dict[str, int]  # weights of the objective terms
    stays: dict[tuple[int, int], int] = field(default_factory=dict)  # (k, t) -> stay variable (movable classes)

    def unit(self, k: int) -> int:
        """Replicas in one unit of x[k, t]: the whole job for single-node classes, else 1."""
        c = self.compression.classes[k]
        return c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1


def _per_node_units(c: JobClass, t: NodeType, block: int) -> int:
    """How many units of class c one node of type t can hold, each resource alone."""
    bounds = []
    if c.cpu:
        bounds.append(t.cpu // (c.cpu * block))
    if c.memory:
        bounds.append(t.memory // (c.memory * block))
    if c.gpus:
        bounds.append(t.full_gpus // (c.gpus * block))
    elif c.share:
        slots = t.full_gpus * (MILLI // c.share) + sum(f // c.share for f, _ in t.partial)
        bounds.append(slots // block)
    return min(bounds) if bounds else c.replicas * len(c.jobs)


def build(compression: Compression) -> Formulation:
    """The program of ``compression``, with the problem's objective weights."""
    problem = compression.problem
    w = problem.weights
    prog = Program()
    classes, types, eligible = compression.classes, compression.types, compression.eligible
    placed: list[int] = []
    replicas: list[int | None] = []
    x: dict[tuple[int, int], int] = {}

    # p[k], r[k]: jobs and replicas placed per class; x[k, t]: units per class and node type.
    for k, c in enumerate(classes):
        p = prog.var(f"p[{k}]", 0, c.count)
        placed.append(p)
        block = c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1
        cols, coefs, col_types = [], [], []
        for t in np.flatnonzero(eligible[k]):
            nt = types[t]
            cap = min(nt.count * _per_node_units(c, nt, block), c.count * c.replicas // block)
            if cap <= 0:
                continue
            v = prog.var(f"x[{k},{t}]", 0, cap)
            x[(k, int(t))] = v
            cols.append(v)
            coefs.append(1)
            col_types.append(int(t))
            # Spread: at most one replica of a job per node, so at most N_t per placed job.
            if c.placement is PlacementRule.SPREAD and c.replicas > 1:
                prog.row(f"spread[{k},{t}]", [v, p], [1, -nt.count], hi=0)
        if compression.exact and c.replicas > 1 and block == 1:
            # z[k, t]: the job uses node t; nodes beyond the first cost ``spread`` each.
            for v, t in zip(cols, col_types, strict=True):
                z = prog.var(f"z[{k},{t}]", 0, 1)
                prog.row(f"uses[{k},{t}]", [v, z], [1, -c.replicas], hi=0)
                prog.add_term("spread", z, -1)
            prog.add_term("spread", p, 1)
        if c.elastic:
            r = prog.var(f"r[{k}]", 0, c.count * c.replicas)
            replicas.append(r)
            # Elastic: between min_replicas and replicas per placed job.
            prog.row(f"elastic_min[{k}]", [r, p], [1, -c.min_replicas], lo=0)
            prog.row(f"elastic_max[{k}]", [r, p], [1, -c.replicas], hi=0)
            prog.row(f"assign[{k}]", [*cols, r], [*coefs, -1], lo=0, hi=0)
            prog.add_term("primary", r, c.value)
        else:
            replicas.append(None)
            # Gang: all replicas of a placed job (single-node classes count whole jobs).
            per_job = 1 if block > 1 else c.replicas
            prog.row(f"assign[{k}]", [*cols, p], [*coefs, -per_job], lo=0, hi=0)
            prog.add_term("primary", p, c.value * c.replicas)

    # Classes drawing on the same jobs (sizes of an elastic single-node job) place each job once.
    pools: dict[int, list[int]] = defaultdict(list)
    for k, c in enumerate(classes):
        if c.pool >= 0:
            pools[c.pool].append(k)
    for pool, ks in pools.items():
        prog.row(f"pool[{pool}]", [placed[k] for k in ks], [1] * len(ks), hi=classes[ks[0]].count)

    # Capacity of each node type: CPU, memory, whole GPUs, and the share packing of its GPUs.
    by_type: dict[int, list[int]] = defaultdict(list)
    for k, t in x:
        by_type[t].append(k)
    flows: dict[int, ArcFlow] = {}
    for t, ks in by_type.items():
        nt = types[t]
        units = {k: (classes[k].replicas if classes[k].placement is PlacementRule.SINGLE_NODE else 1) for k in ks}
        for attr, cap in (("cpu", nt.cpu), ("memory", nt.memory)):
            cols = [x[(k, t)] for k in ks if getattr(classes[k], attr)]
            if cols:
                coefs = [getattr(classes[k], attr) * units[k] for k in ks if getattr(classes[k], attr)]
                prog.row(f"{attr}[{t}]", cols, coefs, hi=nt.count * cap)
        # Cardinality cuts: a node holds at most m units that each need more than 1/(m+1) of a resource.
        for attr, cap in (("cpu", nt.cpu), ("memory", nt.memory)):
            sizes = {k: getattr(classes[k], attr) * units[k] for k in ks}
            for m in range(1, CARDINALITY_CUTS + 1):
                big = [x[(k, t)] for k in ks if sizes[k] * (m + 1) > cap]
                if big and sum(prog.ub[v] for v in big) > m * nt.count:
                    prog.row(f"{attr}_card{m}[{t}]", big, [1] * len(big), hi=m * nt.count)
        whole = [k for k in ks if classes[k].gpus]
        # Whole-node cut: a unit taking all of a node's free GPUs leaves that node's CPU and memory to
        # CPU-only work, so the other GPU units must find theirs on the remaining nodes.
        filling = [k for k in whole if classes[k].gpus * units[k] == nt.full_gpus]
        others = [k for k in ks if (classes[k].gpus and k not in filling) or (classes[k].share and not nt.partial)]
        if filling and others:
            for attr, cap in (("cpu", nt.cpu), ("memory", nt.memory)):
                cols = [x[(k, t)] for k in others] + [x[(k, t)] for k in filling]
                coefs = [getattr(classes[k], attr) * units[k] for k in others] + [cap] * len(filling)
                prog.row(f"{attr}_fill[{t}]", cols, coefs, hi=nt.count * cap)
        shares = [k for k in ks if classes[k].share]
        flow = _arc_flow(prog, t, nt, sorted({classes[k].share for k in shares}, reverse=True)) if shares else None
        if whole or flow:
            cols = [x[(k, t)] for k in whole] + ([flow.fresh] if flow else [])
            coefs = [classes[k].gpus * units[k] for k in whole] + ([1] if flow else [])
            prog.row(f"gpus[{t}]", cols, coefs, hi=nt.count * nt.full_gpus)
            # A node holds at most one unit that needs more than half of its free GPUs.
            big = [x[(k, t)] for k in whole if 2 * classes[k].gpus * units[k] > nt.full_gpus]
            if big and sum(prog.ub[v] for v in big) > nt.count:
                prog.row(f"big[{t}]", big, [1] * len(big), hi=nt.count)
        if flow:
            flows[t] = flow
            for s in flow.sizes:
                arcs = [v for (a, size), v in flow.arcs.items() if size == s]
                ks_s = [k for k in shares if classes[k].share == s]
                prog.row(
                    f"share[{t},{s}]",
                    arcs + [x[(k, t)] for k in ks_s],
                    [1] * len(arcs) + [-units[k] for k in ks_s],
                    lo=0,
                    hi=0,
                )

    # Constant and variable parts of the secondary terms.
    stays: dict[tuple[int, int], int] = {}
    _secondary_terms(compression, prog, x, flows, placed, stays)
    weights = {"primary": 1, "migration": w.migration, "partial": -w.fragmentation, "spread": w.spread}
    return Formulation(compression, prog, placed, replicas, x, flows, weights, stays)


def _reachable(starts: set[int], sizes: list[int]) -> dict[int, set[int]]:
    """For each size s (largest first), the fill levels an item of size s may start from.

    Items on a GPU are taken largest first, so level a admits size s only if a can be reached from a
    start with sizes >= s. Any GPU's contents, sorted, is such a path: the reduction loses nothing.
    """
    reach = set(starts)
    out: dict[int, set[int]] = {}
    for s in sizes:
        frontier = sorted(reach)
        for a in frontier:
            b = a + s
            while b <= MILLI and b not in reach:
                reach.add(b)
                b += s
        out[s] = {a for a in reach if a + s <= MILLI}
    return out


def _arc_flow(prog: Program, t: int, nt: NodeType, sizes: list[int]) -> ArcFlow:
    """Arc-flow of type t: paths from a start level (0 for a fresh GPU) through share arcs to an end."""
    starts: dict[int, int] = defaultdict(int)
    for free, _ in nt.partial:
        starts[MILLI - free] += nt.count
    total_gpus = nt.count * (nt.full_gpus + len(nt.partial))
    fresh = prog.var(f"u[{t}]", 0, nt.count * nt.full_gpus)
    flow = ArcFlow(tuple(sizes), fresh, dict(starts))
    levels_from = _reachable({0, *starts}, sizes)
    for s in sizes:
        for a in sorted(levels_from[s]):
            flow.arcs[(a, s)] = prog.var(f"y[{t},{a},{s}]", 0, total_gpus)
    levels = {0, *starts} | {a + s for (a, s) in flow.arcs}
    for a in sorted(levels):
        if a > 0:
            flow.ends[a] = prog.var(f"e[{t},{a}]", 0, total_gpus)
    # Flow conservation at every level: what starts or arrives there leaves by an arc or ends.
    inflow: dict[int, list[int]] = defaultdict(list)
    outflow: dict[int, list[int]] = defaultdict(list)
    for (a, s), v in flow.arcs.items():
        outflow[a].append(v)
        inflow[a + s].append(v)
    for a in sorted(levels):
        cols = inflow[a] + outflow[a] + ([flow.ends[a]] if a in flow.ends else []) + ([fresh] if a == 0 else [])
        coefs = (
            [1] * len(inflow[a]) + [-1] * len(outflow[a]) + ([-1] if a in flow.ends else []) + ([1] if a == 0 else [])
        )
        supply = starts.get(a, 0)
        prog.row(f"flow[{t},{a}]", cols, coefs, lo=-supply, hi=-supply)
    return flow


def _secondary_terms(
    compression: Compression,
    prog: Program,
    x: dict[tuple[int, int], int],
    flows: dict[int, ArcFlow],
    placed: list[int],
    stays: dict[tuple[int, int], int],
) -> None:
    problem = compression.problem
    # Fixed placements: their value, and the GPUs they leave partly used on types without share work.
    fixed_value = sum(int(problem.replica_value[problem.job_index[p.job]]) for p in compression.fixed.placements)
    prog.offsets["primary"] = fixed_value
    partial_const = 0
    for t, nt in enumerate(compression.types):
        if t not in flows:
            partial_const += nt.count * len(nt.partial)
    for flow in flows.values():
        for a, v in flow.ends.items():
            if 0 < a < MILLI:
                prog.add_term("partial", v, 1)
    prog.offsets["partial"] = partial_const
    # Fixed multi-replica jobs pay their extra nodes as a constant.
    spans: dict[str, set[str]] = defaultdict(set)
    for p in compression.fixed.placements:
        spans[p.job].add(p.node)
    prog.offsets["spread"] = -sum(
        len(ns) - 1 for job, ns in spans.items() if problem.jobs[problem.job_index[job]].replicas > 1
    )
    # Movable running replicas count as not migrated when they stay on their origin type.
    movable = 0
    running = problem.current.by_job() if problem.current is not None else {}
    for k, c in enumerate(compression.classes):
        if not c.running:
            continue
        movable += sum(len(running.get(problem.jobs[j].name, ())) for j in c.jobs)
        unit = c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1
        for t, per_job in c.origin:
            if (k, t) not in x:
                continue
            # stay[k, t]: units left on the type where they run, at most what runs there now.
            stay = prog.var(f"stay[{k},{t}]", 0, per_job * c.count)
            prog.row(f"stay_x[{k},{t}]", [stay, x[(k, t)]], [1, -1], hi=0)
            prog.row(f"stay_p[{k},{t}]", [stay, placed[k]], [1, -(per_job // unit)], hi=0)
            stays[(k, t)] = stay
            prog.add_term("migration", stay, unit)
    prog.offsets["migration"] = -movable


def encode(form: Formulation, allocation: Allocation) -> np.ndarray:
    """The program's variables for ``allocation`` (a hint): counts per class and type, and GPU fill paths.

    Placements of jobs the program does not decide (fixed or unknown) are ignored.
    """
    comp = form.compression
    problem = comp.problem
    xv = np.zeros(form.program.num_vars, dtype=np.int64)
    class_of: dict[int, int] = {}
    sized: dict[tuple[int, int], int] = {}  # (job, replicas) -> class, for pooled classes
    for k, c in enumerate(comp.classes):
        for j in c.jobs:
            class_of.setdefault(j, k)
            if c.pool >= 0:
                sized[(j, c.replicas)] = k
    fixed = comp.fixed.placed_jobs
    fill = _fixed_fill(comp)
    by_job = allocation.by_job()
    gpu_items: dict[tuple[int, int], list[int]] = defaultdict(list)
    for name, places in by_job.items():
        j = problem.job_index.get(name)
        if j is None or name in fixed or j not in class_of:
            continue
        k = sized.get((j, len(places)), class_of[j])
        c = comp.classes[k]
        if len(places) < c.min_replicas or (c.pool >= 0 and len(places) != c.replicas):
            continue
        xv[form.placed[k]] += 1
        r = form.replicas[k]
        if r is not None:
            xv[r] += len(places)
        if c.placement is PlacementRule.SINGLE_NODE:
            t = int(comp.node_type[problem.node_index[places[0].node]])
            if (k, t) in form.x:
                xv[form.x[(k, t)]] += 1
        else:
            for p in places:
                t = int(comp.node_type[problem.node_index[p.node]])
                if (k, t) in form.x:
                    xv[form.x[(k, t)]] += 1
        if c.share:
            for p in places:
                for g in p.gpus:
                    gpu_items[(problem.node_index[p.node], g)].append(c.share)
    # Units left where they run: at most the units on the type and what runs there now.
    for (k, t), var in form.stays.items():
        c = comp.classes[k]
        unit = c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1
        per_job = dict(c.origin)[t]
        xv[var] = min(xv[form.x[(k, t)]], (per_job // unit) * xv[form.placed[k]])
    # Share paths: the new shares on each GPU, largest first, from the GPU's fill level before them.
    for (n, g), sizes in gpu_items.items():
        t = int(comp.node_type[n])
        flow = form.flows.get(t)
        if flow is None:
            continue
        level = fill.get((n, g), 0)
        if level == 0:
            xv[flow.fresh] += 1
        for s in sorted(sizes, reverse=True):
            v = flow.arcs.get((level, s))
            if v is None:
                break
            xv[v] += 1
            level += s
        if level in flow.ends:
            xv[flow.ends[level]] += 1
    # Partly used GPUs that receive nothing end where they start.
    touched: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for n, g in gpu_items:
        level = fill.get((n, g), 0)
        if level > 0:
            touched[int(comp.node_type[n])][level] += 1
    for t, flow in form.flows.items():
        for level, count in flow.starts.items():
            xv[flow.ends[level]] += count - touched[t].get(level, 0)
    return xv


def _fixed_fill(comp: Compression) -> dict[tuple[int, int], int]:
    """Fill level (used milli) of every GPU under the fixed placements, by (node index, GPU index)."""
    fill: dict[tuple[int, int], int] = defaultdict(int)
    index = comp.problem.node_index
    for p in comp.fixed.placements:
        for g in p.gpus:
            fill[(index[p.node], g)] += p.gpu_milli
    return fill
