"""What the simulator measures of its books: the observation a tick hands the controller, and the
timeline sample taken after every step (capacity of the nodes up, allocated and used resources, waiting
and running jobs, FGD fragmentation).

Everything derived is cached and rebuilt only when the books say it changed: the rows of the running
placements when a job started or stopped, the capacity when a node went down or came back, and the
fragmentation per node only for the nodes whose free resources changed since the last sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optalloc.adaptive import NodeUsage, Observation
from optalloc.sim.books import Books
from optalloc.sim.metrics import Timeline
from optalloc.sim.workloads import Scenario

# Columns of a sample: time, capacity (GPU milli, CPU, memory), allocated (same), used (same), waiting,
# running, fragmentation (milli-GPU).
_COLUMNS = 13


class Sampler:
    """Observations and the timeline of one run, read from its :class:`~optalloc.sim.books.Books`."""

    def __init__(self, scenario: Scenario, books: Books) -> None:
        problem = scenario.problem
        self.books = books
        self.nodes = scenario.nodes
        self.capacity = problem.capacity.astype(np.float64)  # (n, 3) cpu, memory, gpu milli
        self.node_model = problem.node_model
        self.fragmentation = fragmentation_model(scenario)
        self.samples: list[tuple[float, ...]] = []
        # Caches, with the books' counters they were built at.
        self._rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._rows_at = -1
        self._cap: tuple[float, float, float] | None = None
        self._cap_at = -1
        self._frag: float | None = None  # FGD fragmentation of the free state
        self._frag_at = (-1, -1)
        self._node_frag: np.ndarray | None = None  # per node
        self._node_frag_at = -1

    def _running_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per running placement: job index, node index, and requested (gpu milli, cpu, memory); rebuilt
        only when the allocation changed."""
        books = self.books
        if self._rows is None or self._rows_at != books.moves:
            index = books.node_index
            jobs: list[int] = []
            nodes: list[int] = []
            gpu: list[float] = []
            for j, ps in books.placements.items():
                for p in ps:
                    jobs.append(j)
                    nodes.append(index[p.node])
                    gpu.append(len(p.gpus) * p.gpu_milli)
            jj = np.array(jobs, dtype=np.int64)
            req = np.zeros((len(jobs), 3))
            if len(jobs):
                req[:, 0] = gpu
                req[:, 1] = books.job_cpu[jj]
                req[:, 2] = books.job_memory[jj]
            self._rows, self._rows_at = (jj, np.array(nodes, dtype=np.int64), req), books.moves
        return self._rows

    def observe(self, t: float) -> Observation:
        """What the running jobs use at ``t``, per node up (GPU busy milli, CPU, memory)."""
        jobs, on, req = self._running_rows()
        # Sums per node in placement order (bincount), not a matrix product: BLAS may sum in another order
        # with another thread count (a Ray worker runs single-threaded), and the drift seen must not change.
        use = req * self.books.frac[jobs]
        n = len(self.nodes)
        used = np.stack([np.bincount(on, weights=use[:, c], minlength=n) for c in range(3)], axis=1)
        nodes = self.nodes
        readings = {
            nodes[k].name: NodeUsage(
                gpu_milli=float(used[k, 0]), cpu=float(used[k, 1]), memory=float(used[k, 2]), gpus=nodes[k].gpus
            )
            for k in np.flatnonzero(self.books.up).tolist()
        }
        return Observation(t, readings)

    def sample(self, t: float) -> None:
        """Record the cluster at ``t`` (a later sample at the same time replaces it)."""
        books = self.books
        if self._cap is None or self._cap_at != books.node_events:
            cap = self.capacity[books.up]
            self._cap = (float(cap[:, 2].sum()), float(cap[:, 0].sum()), float(cap[:, 1].sum()))
            self._cap_at = books.node_events
        if self._frag is None or self._frag_at != (books.moves, books.node_events):
            self._frag = self._fragmentation()
            self._frag_at = (books.moves, books.node_events)
        alloc, use = books.alloc_total, books.used_total
        sample = (
            t,
            *self._cap,
            float(alloc[0]),
            float(alloc[1]),
            float(alloc[2]),
            float(use[0]),
            float(use[1]),
            float(use[2]),
            float(books.waiting),
            float(books.running),
            self._frag,
        )
        if self.samples and self.samples[-1][0] == t:
            self.samples[-1] = sample
        else:
            self.samples.append(sample)

    def _fragmentation(self) -> float:
        """FGD fragmentation summed over the nodes up; per node, recomputed only where the free state
        changed since the last sample (every node after a node event)."""
        books = self.books
        up = books.up
        value = 0.0
        if self.fragmentation is not None and up.any():
            free = books.free
            if self._node_frag is None or self._node_frag_at != books.node_events:
                self._node_frag = self.fragmentation(free.gpu, free.cpu, self.node_model)
                self._node_frag_at = books.node_events
            elif books.dirty:
                dirty = np.fromiter(books.dirty, dtype=np.int64, count=len(books.dirty))
                self._node_frag[dirty] = self.fragmentation(free.gpu[dirty], free.cpu[dirty], self.node_model[dirty])
            value = float(self._node_frag[up].sum())
        books.dirty.clear()
        return value

    def timeline(self, end: float) -> Timeline:
        data = np.array(self.samples, dtype=np.float64).reshape(-1, _COLUMNS)
        return Timeline(
            data[:, 0],
            data[:, 1:4],
            data[:, 4:7],
            data[:, 7:10],
            data[:, 10],
            data[:, 11],
            data[:, 12],
            end,
        )


def fragmentation_model(scenario: Scenario) -> Any:
    """FGD's measure under the scenario's own job mix (the most frequent classes covering 95% of the jobs)."""
    from optalloc.heuristics import FragmentationModel, typical_workload

    problem = scenario.problem
    if not problem.nodes or not problem.max_gpus:
        return None
    workload = typical_workload(scenario.jobs, problem.model_names)
    return FragmentationModel.of(workload, len(problem.model_names))
