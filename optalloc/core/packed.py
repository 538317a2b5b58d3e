"""An allocation as a few arrays of indices into its problem: what a child process of a solve sends back.

Pickling an :class:`Allocation` pickles one object per placement (8,152 placements of the openb default
list: 0.43 MB, 15-45 ms to pickle in the child and 20-90 ms to read and unpickle in the parent on a
2-core machine). The parent has the problem already, so job and node names travel as indices and the
placements as integer arrays: a few kilobytes, pickled and unpickled in about a millisecond, and the
parent rebuilds the same placements (:func:`~optalloc.core.state.placement_of`) in a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass
from typing import Any

import numpy as np

from optalloc.core.allocation import Allocation
from optalloc.core.problem import Problem
from optalloc.core.state import allocation_of, placement_of, unplaced_of


@dataclass(frozen=True)
class PackedAllocation:
    """:class:`Allocation` ``a`` of ``problem`` as arrays (:func:`pack`; :meth:`unpack` gives ``a`` back).

    Per placement ``k``: job index ``job[k]``, ``replica[k]``, node index ``node[k]``, ``gpu_milli[k]``
    and its GPU indices ``gpus[gpu_start[k]:gpu_start[k + 1]]``; per unplaced entry its job index and
    reason and detail (a few distinct strings); the other fields as they are.
    """

    job: np.ndarray
    replica: np.ndarray
    node: np.ndarray
    gpu_milli: np.ndarray
    gpus: np.ndarray
    gpu_start: np.ndarray
    unplaced: tuple[tuple[int, str, str], ...]
    fields: dict[str, Any]

    def unpack(self, problem: Problem) -> Allocation:
        """The allocation packed, with the names of ``problem`` (the one it was packed with)."""
        jobs = [j.name for j in problem.jobs]
        nodes = [n.name for n in problem.nodes]
        gpus, start = self.gpus.tolist(), self.gpu_start.tolist()
        rows = zip(self.job.tolist(), self.replica.tolist(), self.node.tolist(), self.gpu_milli.tolist(), strict=True)
        paused = gc.isenabled()
        gc.disable()  # thousands of new objects and no cycles: no collection walking the heap meanwhile
        try:
            placements = tuple(
                placement_of(jobs[j], r, nodes[n], tuple(gpus[start[k] : start[k + 1]]), m)
                for k, (j, r, n, m) in enumerate(rows)
            )
            unplaced = tuple(unplaced_of(jobs[j], reason, detail) for j, reason, detail in self.unplaced)
        finally:
            if paused:
                gc.enable()
        values = dict(self.fields)
        return allocation_of(placements, unplaced, status=values.pop("status"), stats=values.pop("stats"), **values)


def pack(problem: Problem, allocation: Allocation) -> PackedAllocation:
    """``allocation`` (of ``problem``: every job and node it names is the problem's) as arrays."""
    job_index, node_index = problem.job_index, problem.node_index
    placements = allocation.placements
    start = np.zeros(len(placements) + 1, dtype=np.int64)
    np.cumsum([len(p.gpus) for p in placements], out=start[1:])
    return PackedAllocation(
        job=_small([job_index[p.job] for p in placements]),
        replica=_small([p.replica for p in placements]),
        node=_small([node_index[p.node] for p in placements]),
        gpu_milli=_small([p.gpu_milli for p in placements]),
        gpus=_small([g for p in placements for g in p.gpus]),
        gpu_start=_small(start),
        unplaced=tuple((job_index[u.job], u.reason, u.detail) for u in allocation.unplaced),
        fields={
            f.name: dict(allocation.stats) if f.name == "stats" else getattr(allocation, f.name)
            for f in dataclasses.fields(Allocation)
            if f.name not in ("placements", "unplaced")
        },
    )


def _small(values: list[int] | np.ndarray) -> np.ndarray:
    """``values`` (integers >= 0) in the narrowest of uint16 and int64 that holds them: fewer bytes to send."""
    out = np.asarray(values, dtype=np.int64)
    if not len(out) or (out.min() >= 0 and out.max() <= np.iinfo(np.uint16).max):
        return out.astype(np.uint16)
    return out


def pack_if_named(problem: Problem, allocation: Allocation) -> PackedAllocation | Allocation:
    """:func:`pack`, or ``allocation`` itself when it names a job or node that is not the problem's."""
    try:
        return pack(problem, allocation)
    except KeyError:
        return allocation
