"""A fragmentation guide for the exact engines' search: the FGD growth of placing one unit of a class
on a node of a type, as a linear cost.

Online and batch callers (arrivals decided in batches, the simulator) care where a batch lands, not only
how much of it: packing a batch so that the free capacity left fits the *future* mix is what the FGD
heuristic does one pod at a time. The guide gives the program that foresight: each unit of class ``k``
on type ``t`` costs ``weight x (F_t(after) - F_t(before))``, the growth of the node's expected
fragmentation (``optalloc.core.fragmentation``, under the problem's job mix) when one unit lands on a
node of the type as it is now. It is a search guide, not part of the objective: answers are still
scored by ``optalloc.core.evaluate`` and the bound reported is the unguided LP relaxation's.
"""

from __future__ import annotations

import numpy as np

from optalloc.core import MILLI, PlacementRule, Workload, node_fragmentation
from optalloc.models.formulation import Formulation

TERM = "guide"


def add_guide(form: Formulation, weight: float, workload: Workload | None = None) -> None:
    """Add the ``guide`` term to ``form``'s program (cost per unit; weight 0 adds nothing)."""
    if weight <= 0 or not form.x:
        return
    comp = form.compression
    problem = comp.problem
    wl = Workload.of_problem(problem) if workload is None else workload
    pairs = list(form.x)
    slots = max(problem.max_gpus, 1)
    before_gpu = np.full((len(comp.types), slots), -1, dtype=np.int64)
    for t, nt in enumerate(comp.types):
        free = [MILLI] * nt.full_gpus + [f for f, _ in nt.partial]
        before_gpu[t, : len(free)] = free
    before_cpu = np.array([nt.cpu for nt in comp.types], dtype=np.int64)
    models = np.array([nt.model for nt in comp.types], dtype=np.int64)
    base = node_fragmentation(before_gpu, before_cpu, models, wl)
    after_gpu = before_gpu[[t for _, t in pairs]].copy()
    after_cpu = before_cpu[[t for _, t in pairs]].copy()
    for i, (k, _) in enumerate(pairs):
        c = comp.classes[k]
        block = c.replicas if c.placement is PlacementRule.SINGLE_NODE else 1
        after_cpu[i] -= c.cpu * block
        row = after_gpu[i]
        for _ in range(block):
            if c.gpus:
                idle = np.flatnonzero(row == MILLI)[: c.gpus]
                row[idle] = 0
            elif c.share:
                fits = np.flatnonzero(row >= c.share)
                if len(fits):
                    g = fits[np.argmin(row[fits])]  # the fullest GPU that takes it, as FGD usually picks
                    row[g] -= c.share
    growth = node_fragmentation(after_gpu, after_cpu, models[[t for _, t in pairs]], wl) - base[[t for _, t in pairs]]
    for var, delta in zip(form.x.values(), growth, strict=True):
        coef = round(float(weight * delta))
        if coef:
            form.program.add_term(TERM, var, -coef)
    form.weights[TERM] = 1
