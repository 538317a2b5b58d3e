"""The simulator's books: where every job is in its life, and what every node has free.

Per job (aligned numpy arrays over the scenario's jobs): its status, when it first started and finished,
the work done so far (fractions of its whole work), the run in progress (when it starts making progress,
how long the whole work takes on its hardware, a version number that outdated completions are checked
against), what the policy did to it (preemptions, migrations, restarts after a node failure), what it
holds now and the fraction of that it uses. Per node: the free resources as a
:class:`~optalloc.core.ClusterState` (the same books the heuristics keep) and whether the node is up.

The books only record; the replay loop (:mod:`optalloc.sim.replay`) decides when, and
:mod:`optalloc.sim.sampling` reads them. Two counters tell readers what changed since they last looked:
``moves`` (a job started or stopped) and ``node_events`` (a node went down or came back); ``dirty``
lists the nodes whose free resources changed since the last fragmentation sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optalloc.core import MILLI, ClusterState, Placement, Problem
from optalloc.sim.usage import UsageDraw

# Job status.
FUTURE, WAITING, RUNNING, DONE, REJECTED = range(5)


class Books:
    """The mutable state of one simulation's world (private to one run)."""

    def __init__(self, problem: Problem, usage: UsageDraw) -> None:
        m, n = len(problem.jobs), len(problem.nodes)
        self.problem = problem
        self.usage = usage
        self.node_index = problem.node_index
        # Per job.
        self.status = np.full(m, FUTURE, dtype=np.int8)
        self.first_start = np.full(m, np.nan)
        self.finish = np.full(m, np.nan)
        self.work = np.zeros(m)  # fraction of the job's work done before the current run
        self.run_from = np.zeros(m)  # when the current run starts making progress (start + penalty)
        self.run_len = np.full(m, np.inf)  # seconds for the whole work on the current hardware
        self.version = np.zeros(m, dtype=np.int64)
        self.preemptions = np.zeros(m, dtype=np.int64)
        self.migrations = np.zeros(m, dtype=np.int64)
        self.failures = np.zeros(m, dtype=np.int64)
        self.placements: dict[int, tuple[Placement, ...]] = {}
        demand = problem.demand  # (m, 3) cpu, memory, gpu milli per replica
        self.job_cpu = demand[:, 0].astype(np.float64)
        self.job_memory = demand[:, 1].astype(np.float64)
        self.job_gpus = (demand[:, 2] * problem.job_replicas).astype(np.float64) / MILLI
        self.req = np.zeros((m, 3))  # per job: GPU milli, CPU, memory it holds now (all replicas)
        self.frac = np.zeros((m, 3))  # per job: the used fraction of that request (last evaluated)
        self.alloc_total = np.zeros(3)
        self.used_total = np.zeros(3)
        # Per node.
        self.free = ClusterState.empty(problem)
        self.present = np.arange(self.free.gpu.shape[1])[None, :] < problem.node_gpus[:, None]  # GPUs that exist
        self.up = np.ones(n, dtype=bool)
        # Head counts.
        self.pending = m  # arrivals still to come
        self.waiting = 0
        self.running = 0
        self.down = 0
        self.done = 0  # finished or rejected
        # What changed, for the readers (sampling).
        self.moves = 0
        self.node_events = 0
        self.dirty: set[int] = set()

    # A job's life ---------------------------------------------------------------------------------
    def arrive(self, j: int, *, hostable: bool) -> bool:
        """Job ``j`` arrives: it waits, or is rejected when no node of the cluster could host it."""
        self.pending -= 1
        if not hostable:
            self.status[j] = REJECTED
            self.done += 1
            return False
        self.status[j] = WAITING
        self.waiting += 1
        return True

    def start(self, j: int, placements: Sequence[Placement], t: float, length: float, penalty: float) -> float:
        """Run job ``j`` on ``placements`` from ``t``: ``length`` seconds for its whole work on that
        hardware, after ``penalty`` seconds of restart. Returns when it will have done its work."""
        if np.isnan(self.first_start[j]):
            self.first_start[j] = t
        self.run_from[j] = t + penalty
        self.run_len[j] = length
        self.version[j] += 1
        self.placements[j] = tuple(placements)
        free, index = self.free, self.node_index
        gpu = 0
        for p in placements:
            free.apply(p, -1)
            gpu += len(p.gpus) * p.gpu_milli
            self.dirty.add(index[p.node])
        k = len(placements)
        req = self.req[j]
        req[0], req[1], req[2] = gpu, self.job_cpu[j] * k, self.job_memory[j] * k
        self.frac[j] = self.usage.fraction(np.array([j]), t)[0]
        self.alloc_total += req
        self.used_total += req * self.frac[j]
        if self.status[j] == WAITING:
            self.waiting -= 1
            self.running += 1
        self.status[j] = RUNNING
        self.moves += 1
        return t + penalty + (1.0 - self.work[j]) * length

    def stop(self, j: int, t: float, *, keep_progress: bool) -> None:
        """Stop the current run of job ``j`` at ``t`` (it waits again): bank its progress, free its resources."""
        length = self.run_len[j]
        ran = max(0.0, t - self.run_from[j])
        if keep_progress:
            done = 1.0 if length <= 0 else ran / length
            self.work[j] = min(1.0, self.work[j] + done)
        else:
            self.work[j] = 0.0
        self._release(j)
        self.version[j] += 1
        self.status[j] = WAITING
        self.running -= 1
        self.waiting += 1

    def remaining(self, j: int, t: float) -> float:
        """The part of job ``j``'s work left at ``t`` (1 = all of it), counting the run in progress."""
        done = float(self.work[j])
        if self.status[j] == RUNNING:
            length = float(self.run_len[j])
            done += max(0.0, t - float(self.run_from[j])) / length if length > 0 else 1.0
        return max(0.0, 1.0 - done)

    def complete(self, j: int, t: float) -> None:
        """Job ``j`` has done its work at ``t``."""
        self._release(j)
        self.status[j] = DONE
        self.finish[j] = t
        self.running -= 1
        self.done += 1

    def _release(self, j: int) -> None:
        free, index = self.free, self.node_index
        for p in self.placements.pop(j, ()):
            free.apply(p, +1)
            self.dirty.add(index[p.node])
        self.alloc_total -= self.req[j]
        self.used_total -= self.req[j] * self.frac[j]
        self.req[j] = 0.0
        self.moves += 1

    def refresh_usage(self, t: float) -> None:
        """Re-evaluate the used fraction of every running job at ``t`` (at ticks: the monitoring resolution;
        in between, a job keeps the fraction of its last tick or of its start)."""
        running = np.fromiter(self.placements, dtype=np.int64, count=len(self.placements))
        if len(running):
            self.frac[running] = self.usage.fraction(running, t)
            self.used_total = (self.req[running] * self.frac[running]).sum(axis=0)
            self.alloc_total = self.req[running].sum(axis=0)
        else:
            self.used_total = np.zeros(3)
            self.alloc_total = np.zeros(3)

    # Nodes ----------------------------------------------------------------------------------------
    def node_down(self, k: int) -> bool:
        """Node ``k`` fails; False when it was down already."""
        if not self.up[k]:
            return False
        self.up[k] = False
        self.down += 1
        self.node_events += 1
        return True

    def node_up(self, k: int) -> None:
        self.up[k] = True
        self.down -= 1
        self.node_events += 1

    def over_capacity(self) -> bool:
        """Whether some node has less than nothing free (the books' own consistency check)."""
        free = self.free
        return bool((free.cpu < 0).any() or (free.memory < 0).any() or (free.gpu[self.present] < 0).any())
