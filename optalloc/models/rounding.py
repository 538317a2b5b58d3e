"""Round an LP solution of the program to a feasible integer one (a warm start for CP-SAT).

Counts are floored, each class keeps whole jobs only, the shares each node type receives are packed
into GPUs first-fit decreasing (which fixes the arc-flow), and units are dropped where a type's whole
GPUs run short. Every row with non-negative coefficients stays satisfied by flooring, so the result
is feasible; ``Program.check`` confirms it in the tests.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from optalloc.core import MILLI, PlacementRule
from optalloc.models.formulation import Formulation


def round_solution(form: Formulation, x_lp: np.ndarray) -> np.ndarray:
    comp = form.compression
    classes, types = comp.classes, comp.types
    v = np.zeros(form.program.num_vars, dtype=np.int64)
    counts = {key: int(np.floor(x_lp[var] + 1e-6)) for key, var in form.x.items()}
    # Whole jobs per class: trim the replicas that do not complete a job.
    per_class: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for (k, t), n in counts.items():
        if n > 0:
            per_class[k].append((t, n))
    for k, c in enumerate(classes):
        units = sum(n for _, n in per_class.get(k, ()))
        unit = c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1
        if form.replicas[k] is None:
            per_job = 1 if unit > 1 else c.replicas
            jobs = min(units // per_job, c.count)
            keep = jobs * per_job
        else:
            jobs = min(units // c.min_replicas, c.count)
            keep = min(units, jobs * c.replicas)
        _trim(counts, k, per_class.get(k, []), units - keep)
        v[form.placed[k]] = jobs
        if form.replicas[k] is not None:
            v[form.replicas[k]] = keep
    # Shares of each type packed first-fit decreasing; whole GPUs checked against what is free.
    for t, nt in enumerate(types):
        ks = [k for (k, tt) in form.x if tt == t]
        flow = form.flows.get(t)
        gpus_whole = sum(classes[k].gpus * _unit(form, k) * counts[(k, t)] for k in ks if classes[k].gpus)
        free = nt.count * nt.full_gpus
        if flow is not None:
            sizes: dict[int, int] = defaultdict(int)  # share size -> items to pack
            for k in ks:
                if classes[k].share:
                    sizes[classes[k].share] += counts[(k, t)] * _unit(form, k)
            paths = _best_fit(sizes, [MILLI - f for f, _ in nt.partial] * nt.count)
            fresh = sum(n for (start, _), n in paths.items() if start == 0)
            while gpus_whole + fresh > free:
                # Too few whole GPUs for both: drop the smallest fresh share GPU's units.
                if not _drop_share_gpu(paths, counts, ks, classes, t, form):
                    break
                fresh -= 1
            _write_flow(v, flow, paths)
            v[flow.fresh] = fresh
        for k in ks:
            v[form.x[(k, t)]] = counts[(k, t)]
    _resync(form, v, counts)
    return v


def _unit(form: Formulation, k: int) -> int:
    return form.unit(k)


def _trim(counts: dict[tuple[int, int], int], k: int, where: list[tuple[int, int]], excess: int) -> None:
    for t, _ in sorted(where, key=lambda tn: tn[1]):
        if excess <= 0:
            return
        take = min(excess, counts[(k, t)])
        counts[(k, t)] -= take
        excess -= take


def _best_fit(sizes: dict[int, int], partial_levels: list[int]) -> dict[tuple[int, tuple[int, ...]], int]:
    """Pack share items (size -> count) into GPUs, best fit decreasing: each item on the fullest GPU it
    fits, partly used GPUs (their fill levels) first, then fresh ones. Returns the GPUs as
    ``{(start level, sizes placed in order): how many GPUs}``; every path takes sizes largest first."""
    gpus: dict[int, dict[tuple[int, tuple[int, ...]], int]] = defaultdict(lambda: defaultdict(int))  # level ->
    for level in partial_levels:
        gpus[level][(level, ())] += 1
    for size in sorted(sizes, reverse=True):
        left = sizes[size]
        while left > 0:
            fits = [level for level, group in gpus.items() if level + size <= MILLI and group]
            if not fits:
                # Fresh GPUs, each filled with as many items of this size as it holds.
                per = MILLI // size
                full, rest = divmod(left, per)
                if full:
                    gpus[per * size][(0, (size,) * per)] += full
                if rest:
                    gpus[rest * size][(0, (size,) * rest)] += 1
                break
            level = max(fits)
            group = gpus[level]
            for key in list(group):
                take = min(left, group[key])
                group[key] -= take
                if not group[key]:
                    del group[key]
                start, placed = key
                gpus[level + size][(start, (*placed, size))] += take
                left -= take
                if not left:
                    break
    out: dict[tuple[int, tuple[int, ...]], int] = defaultdict(int)
    for group in gpus.values():
        for key, n in group.items():
            out[key] += n
    return out


def _drop_share_gpu(paths, counts, ks, classes, t, form) -> bool:  # type: ignore[no-untyped-def]
    """Drop one fresh share GPU, the least filled: its items leave their classes' counts."""
    fresh = [key for key, n in paths.items() if key[0] == 0 and key[1] and n > 0]
    if not fresh:
        return False
    key = min(fresh, key=lambda key: sum(key[1]))
    for s in key[1]:
        for k in ks:
            if classes[k].share == s and counts[(k, t)] > 0 and form.unit(k) == 1:
                counts[(k, t)] -= 1
                break
    paths[key] -= 1
    if not paths[key]:
        del paths[key]
    return True


def _write_flow(v: np.ndarray, flow, paths: dict[tuple[int, tuple[int, ...]], int]) -> None:  # type: ignore[no-untyped-def]
    ended: dict[int, int] = defaultdict(int)
    for (start, sizes), n in paths.items():
        level = start
        for s in sizes:
            var = flow.arcs.get((level, s))
            if var is None:
                break
            v[var] += n
            level += s
        ended[level] += n
    for level, n in ended.items():
        if level in flow.ends:
            v[flow.ends[level]] += n


def _resync(form: Formulation, v: np.ndarray, counts: dict[tuple[int, int], int]) -> None:
    """After drops, make jobs placed per class agree with the units left (whole jobs only)."""
    comp = form.compression
    for k, c in enumerate(comp.classes):
        units = sum(counts[(k, t)] for (kk, t) in form.x if kk == k)
        unit = form.unit(k)
        if form.replicas[k] is None:
            per_job = 1 if unit > 1 else c.replicas
            jobs = units // per_job
            if jobs * per_job != units:
                _trim(counts, k, [(t, counts[(k, t)]) for (kk, t) in form.x if kk == k], units - jobs * per_job)
                for (kk, t), var in form.x.items():
                    if kk == k:
                        v[var] = counts[(k, t)]
            v[form.placed[k]] = jobs
        else:
            jobs = min(units // c.min_replicas, c.count)
            v[form.placed[k]] = jobs
            v[form.replicas[k]] = min(units, jobs * c.replicas)
