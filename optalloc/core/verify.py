"""verify(problem, allocation): every violated rule, each naming job, node and resource.

One small check per rule, listed in :data:`CHECKS` (the rules an allocation must keep, in the order
verify reports them). Each check reads :class:`Facts`: the allocation turned into arrays once (job,
node, replica and GPUs of every placement, and the job of every unplaced entry, as integer positions)
next to the problem's demands and capacities, read here from the ``Node`` and ``Job`` objects
themselves (a job's demands only when it has a placement). Checks are numpy passes over all
placements at once, work on integer positions (never on sorted names), and build messages only for
what is wrong: verifying 150,000 placements takes about a tenth of a second.

Written on purpose without the engines' code (no ``ClusterState``, none of ``Problem``'s numpy views,
no shared helpers beyond the data model), so that a bug in an engine cannot hide behind the same bug
here. Names are turned into positions with ``Problem.job_index`` / ``node_index``: the name of each
job and node and its position in the problem's tuples, nothing computed. What runs now, the caller's
input, is checked by :func:`optalloc.core.running.check_running`, which decides with the problem's
numpy views and asks :func:`verify` only for the words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from itertools import chain, repeat
from operator import attrgetter

import numpy as np

from optalloc.core.allocation import Allocation, Placement
from optalloc.core.errors import ProblemError
from optalloc.core.job import MILLI, Job, PlacementRule
from optalloc.core.node import Node
from optalloc.core.problem import Problem


class Kind(StrEnum):
    """The kinds of violation verify reports."""

    UNKNOWN_JOB = "unknown job"
    UNKNOWN_NODE = "unknown node"
    REPLICA_RANGE = "replica out of range"
    DUPLICATE_REPLICA = "duplicate replica"
    DUPLICATE_UNPLACED = "duplicate unplaced"
    PLACED_AND_UNPLACED = "placed and unplaced"
    MISSING_JOB = "job neither placed nor unplaced"
    CPU = "cpu capacity"
    MEMORY = "memory capacity"
    GPU_INDEX = "gpu index out of range"
    GPU_SHAPE = "gpu request mismatch"
    GPU_EXCLUSIVE = "whole gpu not exclusive"
    GPU_SHARE = "gpu share sum over 1000"
    GPU_MEMORY = "gpu memory"
    GPU_MODEL = "gpu model not allowed"
    NODE_SELECTOR = "node selector not matched"
    GANG = "gang incomplete"
    SINGLE_NODE = "single-node job spans nodes"
    SPREAD = "spread job shares a node"
    NOT_PREEMPTIBLE = "non-preemptible job moved or stopped"


@dataclass(frozen=True)
class Violation:
    kind: Kind
    message: str
    job: str | None = None
    node: str | None = None
    resource: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


def _ints(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64) if values else np.zeros(0, dtype=np.int64)


def _positions(index: dict[str, int], names: Iterator[str], count: int) -> np.ndarray:
    """int64 (count,): the position of each name in ``index`` (-1 for a name it does not have)."""
    return np.fromiter(map(index.get, names, repeat(-1)), np.int64, count)


class Facts:
    """An allocation as arrays, next to the problem's demands and capacities (built once per verify).

    Per placement ``p``: ``job[p]`` / ``node[p]`` indices (-1: a name the problem does not have),
    ``replica[p]``, ``milli[p]`` (the placement's ``gpu_milli``) and ``held[p]`` (GPU indices it
    lists). ``counted`` marks the placements of a known job on a known node: the only ones whose
    resources count. GPU entries (one per listed GPU index): ``entry[e]`` their placement, ``gpu[e]``
    the index. Per unplaced entry ``u``: ``unplaced_job[u]`` (-1: a name the problem does not have).
    The jobs' demands (``job_cpu``, ...) are read from the ``Job`` objects of the jobs that have a
    counted placement (0 for the others, whose demands no check reads).
    """

    def __init__(self, problem: Problem, allocation: Allocation) -> None:
        self.problem = problem
        self.allocation = allocation
        self.jobs: tuple[Job, ...] = problem.jobs
        self.nodes: tuple[Node, ...] = problem.nodes
        placements = allocation.placements
        self.placements: tuple[Placement, ...] = placements
        k = len(placements)
        self.job = _positions(problem.job_index, map(attrgetter("job"), placements), k)
        self.node = _positions(problem.node_index, map(attrgetter("node"), placements), k)
        self.replica = np.fromiter(map(attrgetter("replica"), placements), np.int64, k)
        self.milli = np.fromiter(map(attrgetter("gpu_milli"), placements), np.int64, k)
        gpus = list(map(attrgetter("gpus"), placements))
        self.held = np.fromiter(map(len, gpus), np.int64, k)
        self.entry = np.repeat(np.arange(k), self.held)
        self.gpu = np.fromiter(chain.from_iterable(gpus), np.int64, len(self.entry))
        self.counted = (self.job >= 0) & (self.node >= 0)
        unplaced = allocation.unplaced
        self.unplaced_job = _positions(problem.job_index, map(attrgetter("job"), unplaced), len(unplaced))

    # Demands of the jobs and capacities of the nodes, straight from the data model ---------------
    @cached_property
    def used_jobs(self) -> np.ndarray:
        """Positions of the jobs with at least one counted placement, ascending."""
        out: np.ndarray = np.flatnonzero(np.bincount(self.job[self.counted], minlength=len(self.jobs)))
        return out

    @cached_property
    def used_specs(self) -> list[Job]:
        """The ``Job`` objects of :attr:`used_jobs`, in that order."""
        jobs = self.jobs
        if len(self.used_jobs) == len(jobs):
            return list(jobs)
        return [jobs[j] for j in self.used_jobs.tolist()]

    def used_flags(self, name: str, default: object = None) -> np.ndarray:
        """bool per job of :attr:`used_jobs`: whether its attribute ``name`` is set (truthy), or with
        ``default``, differs from it."""
        values = map(attrgetter(name), self.used_specs)
        flags = map(bool, values) if default is None else map(default.__ne__, values)
        return np.fromiter(flags, bool, len(self.used_jobs))

    def _job_values(self, name: str) -> np.ndarray:
        """int64 (m,): attribute ``name`` of every job with a counted placement (0 for the others)."""
        out = np.zeros(len(self.jobs), dtype=np.int64)
        used = self.used_jobs
        out[used] = np.fromiter(map(attrgetter(name), self.used_specs), np.int64, len(used))
        return out

    def at_entries(self, values: np.ndarray) -> np.ndarray:
        """Per GPU entry, ``values`` of its placement's job (0 where the job is one the problem does not have)."""
        job = self.job[self.entry]
        out = np.zeros(len(job), dtype=values.dtype)
        known = job >= 0
        out[known] = values[job[known]]
        return out

    @cached_property
    def job_cpu(self) -> np.ndarray:
        return self._job_values("cpu")

    @cached_property
    def job_memory(self) -> np.ndarray:
        return self._job_values("memory")

    @cached_property
    def job_gpus(self) -> np.ndarray:
        """Whole GPUs per replica."""
        return self._job_values("gpus")

    @cached_property
    def job_share(self) -> np.ndarray:
        """Milli of one shared GPU per replica (0 unless sharing)."""
        return self._job_values("gpu_milli")

    @cached_property
    def job_gpu_memory(self) -> np.ndarray:
        return self._job_values("gpu_memory")

    @cached_property
    def job_replicas(self) -> np.ndarray:
        return self._job_values("replicas")

    @cached_property
    def job_needed(self) -> np.ndarray:
        """Replicas that must be placed for the job to count as placed (``min_replicas`` or all)."""
        minimum = self._job_values("min_replicas")
        out: np.ndarray = np.where(minimum > 0, minimum, self.job_replicas)
        return out

    @cached_property
    def node_cpu(self) -> np.ndarray:
        return _ints([n.cpu for n in self.nodes])

    @cached_property
    def node_memory(self) -> np.ndarray:
        return _ints([n.memory for n in self.nodes])

    @cached_property
    def node_gpus(self) -> np.ndarray:
        return _ints([n.gpus for n in self.nodes])

    @cached_property
    def node_gpu_memory(self) -> np.ndarray:
        return _ints([n.gpu_memory for n in self.nodes])

    # Derived ----------------------------------------------------------------------------------
    @cached_property
    def slot(self) -> np.ndarray:
        """Per GPU entry: a key of (node, GPU index) for the entries that count, -1 for the others.

        An entry counts when its placement counts and the index is a GPU of the node.
        """
        p = self.entry
        node = self.node[p]
        ok = self.counted[p] & (self.gpu >= 0)
        ok[ok] &= self.gpu[ok] < self.node_gpus[node[ok]]
        out: np.ndarray = np.where(ok, node * self.gpu_width + np.where(ok, self.gpu, 0), -1)
        return out

    @cached_property
    def gpu_width(self) -> int:
        return int(self.node_gpus.max()) + 1 if len(self.nodes) else 1

    def where(self, p: int) -> str:
        q = self.placements[p]
        return f"job {q.job!r} replica {q.replica} on node {q.node!r}"

    def per_slot(self, mask: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over the GPU entries selected by ``mask`` (counting ones only): per distinct (node, GPU),
        its key, the sum of ``values`` and the first entry (in placement order)."""
        keep = mask & (self.slot >= 0)
        keys = self.slot[keep]
        if not len(keys):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        sums = np.bincount(inverse, weights=values[keep].astype(np.float64), minlength=len(unique))
        entries = np.flatnonzero(keep)[first]
        return unique, np.rint(sums).astype(np.int64), entries

    def node_gpu(self, key: int) -> tuple[str, int]:
        return self.nodes[key // self.gpu_width].name, key % self.gpu_width

    @cached_property
    def per_job(self) -> PerJob:
        """Per job, over the placements that count: how many, distinct replica indices, distinct nodes."""
        m = len(self.jobs)
        p = self.counted
        job, replica, node = self.job[p], self.replica[p], self.node[p]
        placements = np.bincount(job, minlength=m)
        # distinct (job, replica) pairs: placements sorted by job, then replica
        order = np.lexsort((replica, job))
        js, rs = job[order], replica[order]
        first = np.ones(len(js), dtype=bool)
        first[1:] = (js[1:] != js[:-1]) | (rs[1:] != rs[:-1])
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(js)))
        replicas = np.bincount(js[starts], minlength=m)
        hosts = np.unique(job * max(len(self.nodes), 1) + node)  # distinct (job, node) pairs
        nodes = np.bincount(hosts // max(len(self.nodes), 1), minlength=m)
        twice = counts > 1
        repeated = [
            (int(a), int(b), int(c))
            for a, b, c in zip(js[starts][twice], rs[starts][twice], counts[twice], strict=True)
        ]
        return PerJob(placements, replicas, nodes, repeated)


@dataclass(frozen=True)
class PerJob:
    """Per job (counted placements only): placements, distinct replica indices, distinct nodes."""

    placements: np.ndarray
    replicas: np.ndarray
    nodes: np.ndarray
    repeated: list[tuple[int, int, int]]  # (job, replica, times) for replica indices placed twice or more


Check = Callable[[Facts], Iterator[Violation]]


# Names ------------------------------------------------------------------------------------------
def check_names(f: Facts) -> Iterator[Violation]:
    """Every placement names a job and a node of the problem."""
    for p in np.flatnonzero(~f.counted).tolist():
        q = f.placements[p]
        if f.job[p] < 0:
            yield Violation(
                Kind.UNKNOWN_JOB, f"placement names job {q.job!r}, which the problem does not have", q.job, q.node
            )
        else:
            yield Violation(
                Kind.UNKNOWN_NODE,
                f"job {q.job!r} is placed on node {q.node!r}, which the problem does not have",
                q.job,
                q.node,
            )


def check_replica_range(f: Facts) -> Iterator[Violation]:
    """Replica indices run from 0 to ``replicas - 1``."""
    bad = f.counted.copy()
    bad[bad] = f.replica[bad] >= f.job_replicas[f.job[bad]]
    for p in np.flatnonzero(bad).tolist():
        job = f.jobs[f.job[p]]
        q = f.placements[p]
        yield Violation(Kind.REPLICA_RANGE, f"{f.where(p)}: replica index not in 0..{job.replicas - 1}", q.job, q.node)


# What each replica holds ----------------------------------------------------------------------
def check_gpu_shape(f: Facts) -> Iterator[Violation]:
    """A replica holds exactly the GPUs it asked for: ``gpus`` whole ones, one share, or none; no index twice."""
    p = np.flatnonzero(f.counted)
    j = f.job[p]
    want = np.where(f.job_gpus[j] > 0, f.job_gpus[j], (f.job_share[j] > 0).astype(np.int64))
    per_gpu = np.where(f.job_gpus[j] > 0, MILLI, f.job_share[j])
    bad = (f.held[p] != want) | (f.milli[p] != per_gpu)
    # the same GPU index listed twice by one placement (only placements listing two or more)
    several = np.flatnonzero(f.held[f.entry] > 1)
    entry, gpu = f.entry[several], f.gpu[several]
    order = np.lexsort((gpu, entry))
    twice = (entry[order][1:] == entry[order][:-1]) & (gpu[order][1:] == gpu[order][:-1])
    repeated = np.zeros(len(f.placements), dtype=bool)
    repeated[entry[order][1:][twice]] = True
    bad |= repeated[p]
    for k in np.flatnonzero(bad).tolist():
        q, job = f.placements[p[k]], f.jobs[j[k]]
        yield Violation(
            Kind.GPU_SHAPE,
            f"{f.where(p[k])}: holds GPUs {list(q.gpus)} at {q.gpu_milli} milli each, "
            f"asked for {job.gpus_used} GPU(s) at {job.per_gpu_milli} milli",
            q.job,
            q.node,
            "gpu",
        )


def check_gpu_index(f: Facts) -> Iterator[Violation]:
    """Every GPU index is a GPU of the node."""
    bad = f.counted[f.entry] & (f.slot < 0)
    for e in np.flatnonzero(bad).tolist():
        p = int(f.entry[e])
        q = f.placements[p]
        node = f.nodes[f.node[p]]
        yield Violation(
            Kind.GPU_INDEX, f"{f.where(p)}: GPU index {f.gpu[e]} not in 0..{node.gpus - 1}", q.job, q.node, "gpu"
        )


def check_gpu_model(f: Facts) -> Iterator[Violation]:
    """A replica using GPUs runs on a GPU model its job allows."""
    used = f.used_jobs
    gpu = (f.job_gpus[used] > 0) | (f.job_share[used] > 0)
    restricted = used[gpu & f.used_flags("gpu_models")]
    if not len(restricted):
        return
    for p in np.flatnonzero(f.counted & np.isin(f.job, restricted)).tolist():
        job, node, q = f.jobs[f.job[p]], f.nodes[f.node[p]], f.placements[p]
        if node.gpu_model not in job.gpu_models:
            allowed = ", ".join(sorted(job.gpu_models))
            yield Violation(
                Kind.GPU_MODEL,
                f"{f.where(p)}: GPU model {node.gpu_model!r} not in {{{allowed}}}",
                q.job,
                q.node,
                "gpu_model",
            )


def check_node_selector(f: Facts) -> Iterator[Violation]:
    """A replica runs on a node whose labels match its job's node selector."""
    selective = f.used_jobs[f.used_flags("node_selector")]
    if not len(selective):
        return
    for p in np.flatnonzero(f.counted & np.isin(f.job, selective)).tolist():
        job, node, q = f.jobs[f.job[p]], f.nodes[f.node[p]], f.placements[p]
        for label, value in job.node_selector.items():
            if node.labels.get(label) != value:
                yield Violation(
                    Kind.NODE_SELECTOR,
                    f"{f.where(p)}: label {label}={node.labels.get(label)!r}, selector wants {value!r}",
                    q.job,
                    q.node,
                    "labels",
                )


# Capacities -----------------------------------------------------------------------------------
def _node_sums(f: Facts, demand: np.ndarray) -> np.ndarray:
    p = f.counted
    sums = np.bincount(f.node[p], weights=demand[f.job[p]].astype(np.float64), minlength=len(f.nodes))
    out: np.ndarray = np.rint(sums).astype(np.int64)
    return out


def check_cpu(f: Facts) -> Iterator[Violation]:
    """The CPU placed on a node is at most its capacity."""
    used = _node_sums(f, f.job_cpu)
    for n in np.flatnonzero(used > f.node_cpu).tolist():
        name = f.nodes[n].name
        yield Violation(
            Kind.CPU, f"node {name!r}: {used[n]} milli-CPU placed, capacity {f.node_cpu[n]}", None, name, "cpu"
        )


def check_memory(f: Facts) -> Iterator[Violation]:
    """The memory placed on a node is at most its capacity."""
    used = _node_sums(f, f.job_memory)
    for n in np.flatnonzero(used > f.node_memory).tolist():
        name = f.nodes[n].name
        yield Violation(
            Kind.MEMORY, f"node {name!r}: {used[n]} MiB placed, capacity {f.node_memory[n]}", None, name, "memory"
        )


def check_gpu_exclusive(f: Facts) -> Iterator[Violation]:
    """A GPU held whole is held by one replica, and by no share."""
    whole = f.at_entries(f.job_gpus) > 0
    share = ~whole & (f.at_entries(f.job_share) > 0)
    keys, holders, first = f.per_slot(whole, np.ones(len(whole), dtype=np.int64))
    if not len(keys):
        return
    sharers = np.isin(keys, f.slot[share & (f.slot >= 0)])
    for k in np.flatnonzero((holders > 1) | sharers).tolist():
        key = int(keys[k])
        at = np.flatnonzero(f.slot == key)
        names = {f.placements[int(f.entry[e])].job for e in at.tolist() if whole[e] or share[e]}
        name, g = f.node_gpu(key)
        yield Violation(
            Kind.GPU_EXCLUSIVE,
            f"node {name!r} GPU {g}: whole GPU held with others {sorted(names)}",
            f.placements[int(f.entry[first[k]])].job,
            name,
            "gpu",
        )


def check_gpu_share(f: Facts) -> Iterator[Violation]:
    """The shares on one GPU sum to at most 1000 milli."""
    milli = f.at_entries(f.job_share)
    share = (f.at_entries(f.job_gpus) == 0) & (milli > 0)
    keys, total, first = f.per_slot(share, milli)
    for k in np.flatnonzero(total > MILLI).tolist():
        name, g = f.node_gpu(int(keys[k]))
        yield Violation(
            Kind.GPU_SHARE,
            f"node {name!r} GPU {g}: shares sum to {total[k]} milli",
            f.placements[int(f.entry[first[k]])].job,
            name,
            "gpu",
        )


def check_gpu_memory(f: Facts) -> Iterator[Violation]:
    """The GPU memory placed on one GPU is at most the node's GPU memory."""
    need = f.at_entries(f.job_gpu_memory)
    keys, used, _ = f.per_slot(need > 0, need)
    if not len(keys):
        return
    cap = f.node_gpu_memory[keys // f.gpu_width]
    for k in np.flatnonzero(used > cap).tolist():
        name, g = f.node_gpu(int(keys[k]))
        yield Violation(
            Kind.GPU_MEMORY,
            f"node {name!r} GPU {g}: {used[k]} MiB GPU memory placed, capacity {cap[k]}",
            None,
            name,
            "gpu_memory",
        )


# Jobs ------------------------------------------------------------------------------------------
def check_unplaced(f: Facts) -> Iterator[Violation]:
    """The unplaced list names jobs of the problem, each once."""
    known = f.unplaced_job >= 0
    times = np.bincount(f.unplaced_job[known], minlength=len(f.jobs))
    suspect = ~known
    suspect[known] = times[f.unplaced_job[known]] > 1
    if not suspect.any():
        return
    unplaced = f.allocation.unplaced
    names = [unplaced[u].job for u in np.flatnonzero(suspect).tolist()]
    for name, count in Counter(names).items():
        if f.problem.job_index.get(name, -1) < 0:
            yield Violation(
                Kind.UNKNOWN_JOB, f"unplaced list names job {name!r}, which the problem does not have", name
            )
        if count > 1:
            yield Violation(Kind.DUPLICATE_UNPLACED, f"job {name!r} is listed {count} times as unplaced", name)


def check_replicas(f: Facts) -> Iterator[Violation]:
    """Each replica is placed at most once; gangs complete (elastic jobs: at least ``min_replicas``)."""
    per = f.per_job
    for j, replica, times in per.repeated:
        name = f.jobs[j].name
        yield Violation(Kind.DUPLICATE_REPLICA, f"job {name!r} replica {replica} is placed {times} times", name)
    need = f.job_needed
    for j in np.flatnonzero((per.placements > 0) & (per.replicas < need)).tolist():
        name = f.jobs[j].name
        yield Violation(Kind.GANG, f"job {name!r}: {per.replicas[j]} of {need[j]} required replicas placed", name)


def check_placement_rules(f: Facts) -> Iterator[Violation]:
    """A single-node job runs on one node; a spread job has at most one replica per node."""
    ruled = f.used_jobs[f.used_flags("placement", PlacementRule.ANY)]
    if not len(ruled):
        return
    per = f.per_job
    for j in ruled.tolist():
        job = f.jobs[j]
        if job.placement is PlacementRule.SINGLE_NODE and per.nodes[j] > 1:
            hosts = sorted({f.placements[p].node for p in np.flatnonzero(f.counted & (f.job == j)).tolist()})
            yield Violation(Kind.SINGLE_NODE, f"job {job.name!r} spans nodes {hosts}", job.name)
        if job.placement is PlacementRule.SPREAD and per.nodes[j] < per.placements[j]:
            yield Violation(
                Kind.SPREAD,
                f"job {job.name!r} has {per.placements[j]} replicas on {per.nodes[j]} nodes",
                job.name,
            )


def check_accounted(f: Facts) -> Iterator[Violation]:
    """Every job is either placed or listed as unplaced, not both."""
    m = len(f.jobs)
    unplaced = np.zeros(m, dtype=bool)
    unplaced[f.unplaced_job[f.unplaced_job >= 0]] = True
    placed = np.zeros(m, dtype=bool)
    placed[f.job[f.counted]] = True
    mentioned = np.zeros(m, dtype=bool)  # placed only on unknown nodes: reported as such
    mentioned[f.job[(f.job >= 0) & (f.node < 0)]] = True
    both = placed & unplaced
    for j in np.flatnonzero(both | (~placed & ~mentioned & ~unplaced)).tolist():
        name = f.jobs[j].name
        if both[j]:
            yield Violation(Kind.PLACED_AND_UNPLACED, f"job {name!r} is both placed and listed as unplaced", name)
        else:
            yield Violation(Kind.MISSING_JOB, f"job {name!r} is neither placed nor listed as unplaced", name)


def check_not_preemptible(f: Facts) -> Iterator[Violation]:
    """Running jobs that may not be preempted stay exactly where they run (node and GPU indices)."""
    current = f.problem.current
    if current is None:
        return
    jobs = {j.name: j for j in f.jobs}
    pinned = {p.job for p in current.placements if p.job in jobs and not jobs[p.job].preemptible}
    if not pinned:
        return
    before: dict[str, Counter[tuple[str, tuple[int, ...]]]] = {}
    for p in current.placements:
        if p.job in pinned:
            before.setdefault(p.job, Counter())[(p.node, tuple(sorted(p.gpus)))] += 1
    now: dict[str, Counter[tuple[str, tuple[int, ...]]]] = {name: Counter() for name in before}
    for p in f.placements:
        if p.job in now:
            now[p.job][(p.node, tuple(sorted(p.gpus)))] += 1
    for name, places in before.items():
        if now[name] != places:
            nodes = sorted(node for node, _ in places.elements())
            yield Violation(
                Kind.NOT_PREEMPTIBLE,
                f"job {name!r} runs on {nodes} and may not be moved, rebound to other GPUs or stopped",
                name,
            )


#: The rules an allocation must keep, in the order verify reports their violations.
CHECKS: tuple[Check, ...] = (
    check_names,
    check_replica_range,
    check_gpu_shape,
    check_gpu_index,
    check_gpu_model,
    check_node_selector,
    check_cpu,
    check_memory,
    check_gpu_exclusive,
    check_gpu_share,
    check_gpu_memory,
    check_unplaced,
    check_replicas,
    check_placement_rules,
    check_accounted,
    check_not_preemptible,
)


def verify(problem: Problem, allocation: Allocation) -> list[Violation]:
    """Every violation of ``allocation`` against ``problem``; an empty list means valid.

    Runs every check of :data:`CHECKS` (one per rule) on the allocation's :class:`Facts`.
    """
    if not isinstance(problem, Problem):
        raise ProblemError("problem", problem, "is not a Problem")
    if not isinstance(allocation, Allocation):
        raise ProblemError("allocation", allocation, "is not an Allocation")
    facts = Facts(problem, allocation)
    return [v for check in CHECKS for v in check(facts)]
