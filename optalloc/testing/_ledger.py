"""Free capacity recounted in plain Python, for the strategies and the brute force.

Deliberately shares no code with the engines (no ``ClusterState``, no numpy): the testing tools
must not inherit an engine's bug. Quantities are the core's canonical integers (CPU milli-cores,
memory MiB, milli-GPU, GPU memory MiB).

A *rule* names one constraint of ``verify``; the enumerators can relax one on purpose, which is
how the strategies build allocations that break exactly that rule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import combinations

from optalloc.core import MILLI, Job, Placement, PlacementRule, Problem

# Constraints the enumerators can relax (each maps to one verify Kind, see strategies.py).
CPU = "cpu"
MEMORY = "memory"
GPU_EXCLUSIVE = "gpu-exclusive"
GPU_SHARE = "gpu-share"
GPU_MEMORY = "gpu-memory"
GPU_MODEL = "gpu-model"
NODE_SELECTOR = "node-selector"
SPREAD = "spread"
SINGLE_NODE = "single-node"
RULES = (CPU, MEMORY, GPU_EXCLUSIVE, GPU_SHARE, GPU_MEMORY, GPU_MODEL, NODE_SELECTOR, SPREAD, SINGLE_NODE)

Choice = tuple[int, tuple[int, ...]]  # (node index, GPU indices) of one replica


def least(job: Job) -> int:
    """The fewest replicas that place ``job`` (``min_replicas``; typed optional in the core, always set)."""
    return job.replicas if job.min_replicas is None else job.min_replicas


class Ledger:
    """What is used on every node and GPU of ``problem``, mutated by :meth:`take` / :meth:`give`.

    Per node: ``cpu`` and ``memory`` used. Per GPU slot ``[node][gpu]``: ``used`` milli (whole
    GPUs count 1000, shares their share), ``share`` the sum of shares only, ``whole`` how many
    whole-GPU replicas hold it, ``sharers`` how many sharing replicas, ``gpu_mem`` MiB used.
    ``partial`` counts GPUs with ``0 < used < 1000`` (the objective's fragmentation term).
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.job_of = {j.name: j for j in problem.jobs}
        self.node_at = {n.name: i for i, n in enumerate(problem.nodes)}
        self.cpu = [0] * len(problem.nodes)
        self.memory = [0] * len(problem.nodes)
        self.used = [[0] * n.gpus for n in problem.nodes]
        self.share = [[0] * n.gpus for n in problem.nodes]
        self.whole = [[0] * n.gpus for n in problem.nodes]
        self.sharers = [[0] * n.gpus for n in problem.nodes]
        self.gpu_mem = [[0] * n.gpus for n in problem.nodes]
        self.partial = 0

    # Bookkeeping -------------------------------------------------------------------------------
    def take(self, job: Job, node: int, gpus: tuple[int, ...], sign: int = 1) -> None:
        """Add (sign=1) or remove (sign=-1) one replica of ``job`` on node index ``node``."""
        self.cpu[node] += sign * job.cpu
        self.memory[node] += sign * job.memory
        for g in gpus:
            before = self.used[node][g]
            self.used[node][g] += sign * job.per_gpu_milli
            after = self.used[node][g]
            self.partial += (0 < after < MILLI) - (0 < before < MILLI)
            if job.gpus:
                self.whole[node][g] += sign
            else:
                self.share[node][g] += sign * job.gpu_milli
                self.sharers[node][g] += sign
            self.gpu_mem[node][g] += sign * job.gpu_memory

    def give(self, job: Job, node: int, gpus: tuple[int, ...]) -> None:
        self.take(job, node, gpus, sign=-1)

    def take_placement(self, placement: Placement, sign: int = 1) -> None:
        """Book a placement by names (its GPU indices as given; CPU-only replicas hold none)."""
        job = self.job_of[placement.job]
        self.take(job, self.node_at[placement.node], tuple(placement.gpus), sign)

    # Which rules a state breaks ----------------------------------------------------------------
    def broken(self) -> set[str]:
        """The capacity rules the booked replicas break (CPU, memory, and per-GPU rules)."""
        out: set[str] = set()
        for i, node in enumerate(self.problem.nodes):
            if self.cpu[i] > node.cpu:
                out.add(CPU)
            if self.memory[i] > node.memory:
                out.add(MEMORY)
            for g in range(node.gpus):
                if self.whole[i][g] > 1 or (self.whole[i][g] and self.sharers[i][g]):
                    out.add(GPU_EXCLUSIVE)
                if self.share[i][g] > MILLI:
                    out.add(GPU_SHARE)
                if self.gpu_mem[i][g] > node.gpu_memory:
                    out.add(GPU_MEMORY)
        return out

    # Enumeration -------------------------------------------------------------------------------
    def node_allows(self, job: Job, node: int, relax: Collection[str] = ()) -> bool:
        """GPU model, node selector, CPU and memory for one more replica on node index ``node``."""
        spec = self.problem.nodes[node]
        if GPU_MODEL not in relax and job.gpus_used and job.gpu_models and spec.gpu_model not in job.gpu_models:
            return False
        if NODE_SELECTOR not in relax and any(spec.labels.get(k) != v for k, v in job.node_selector.items()):
            return False
        if CPU not in relax and self.cpu[node] + job.cpu > spec.cpu:
            return False
        return MEMORY in relax or self.memory[node] + job.memory <= spec.memory

    def gpu_choices(
        self, job: Job, node: int, relax: Collection[str] = (), *, symmetric: bool = True
    ) -> list[tuple[int, ...]]:
        """GPU index tuples one replica of ``job`` may take on node index ``node``.

        ``symmetric``: GPUs in the same state are interchangeable (for the objective and for
        verify), so only one representative per state is offered — exact for the optimum and far
        fewer branches.
        """
        if not job.gpus_used:
            return [()]
        spec = self.problem.nodes[node]
        mem_ok = GPU_MEMORY in relax or not job.gpu_memory
        ok = []
        for g in range(spec.gpus):
            if not mem_ok and self.gpu_mem[node][g] + job.gpu_memory > spec.gpu_memory:
                continue
            if job.gpus:
                if GPU_EXCLUSIVE not in relax and self.used[node][g]:
                    continue
            else:
                if GPU_EXCLUSIVE not in relax and self.whole[node][g]:
                    continue
                if GPU_SHARE not in relax and self.share[node][g] + job.gpu_milli > MILLI:
                    continue
            ok.append(g)
        if job.gpus:
            if symmetric and not relax:
                # Every free GPU is in the same state: the lowest indices stand for all of them.
                return [tuple(ok[: job.gpus])] if len(ok) >= job.gpus else []
            return list(combinations(ok, job.gpus))
        if symmetric:
            seen: dict[tuple[int, ...], int] = {}
            for g in ok:
                seen.setdefault(self.state(node, g), g)
            return [(g,) for g in seen.values()]
        return [(g,) for g in ok]

    def state(self, node: int, g: int) -> tuple[int, ...]:
        return (
            self.used[node][g],
            self.share[node][g],
            self.whole[node][g],
            self.sharers[node][g],
            self.gpu_mem[node][g],
        )

    def replica_choices(self, job: Job, relax: Collection[str] = (), *, symmetric: bool = True) -> list[Choice]:
        """Every (node, GPUs) where one more replica of ``job`` fits now, rules relaxed as asked."""
        out: list[Choice] = []
        for i in range(len(self.problem.nodes)):
            if self.node_allows(job, i, relax):
                out.extend((i, gpus) for gpus in self.gpu_choices(job, i, relax, symmetric=symmetric))
        return out

    def assignments(
        self,
        job: Job,
        count: int,
        relax: Collection[str] = (),
        *,
        symmetric: bool = True,
    ) -> Iterator[list[Choice]]:
        """Every way to add ``count`` replicas of ``job`` (the ledger holds them while yielded).

        Replicas are interchangeable, so node indices never decrease along the list; ``spread``
        and ``single-node`` are honoured unless relaxed.
        """
        spread = job.placement is PlacementRule.SPREAD and SPREAD not in relax
        single = job.placement is PlacementRule.SINGLE_NODE and SINGLE_NODE not in relax
        acc: list[Choice] = []

        def rec(lowest: int) -> Iterator[list[Choice]]:
            if len(acc) == count:
                yield list(acc)
                return
            for node, gpus in self.replica_choices(job, relax, symmetric=symmetric):
                if node < lowest or (spread and acc and node == acc[-1][0]):
                    continue
                if single and acc and node != acc[0][0]:
                    continue
                self.take(job, node, gpus)
                acc.append((node, gpus))
                try:
                    yield from rec(node)
                finally:  # also when the caller stops early: the ledger is left as found
                    acc.pop()
                    self.give(job, node, gpus)

        yield from rec(0)
