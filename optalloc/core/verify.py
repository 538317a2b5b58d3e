"""verify(problem, allocation): every violated rule, each naming job, node and resource.

Written on purpose without the engines' code (no numpy state, no shared helpers beyond the data
model), so that a bug in an engine cannot hide behind the same bug here. ``check_running`` (what runs
now is the caller's input) first decides with the problem's numpy views, which is fast enough for a
controller's every step; a property test pins that it agrees with ``verify``, which words the error.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from optalloc.core.allocation import Allocation, Placement
from optalloc.core.errors import ProblemError
from optalloc.core.job import MILLI, PlacementRule
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


def verify(problem: Problem, allocation: Allocation) -> list[Violation]:
    """Every violation of ``allocation`` against ``problem``; an empty list means valid."""
    if not isinstance(problem, Problem):
        raise ProblemError("problem", problem, "is not a Problem")
    if not isinstance(allocation, Allocation):
        raise ProblemError("allocation", allocation, "is not an Allocation")
    out: list[Violation] = []
    jobs = {j.name: j for j in problem.jobs}
    nodes = {n.name: n for n in problem.nodes}

    cpu: dict[str, int] = defaultdict(int)
    mem: dict[str, int] = defaultdict(int)
    gpu_whole: dict[tuple[str, int], list[str]] = defaultdict(list)
    gpu_share: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    gpu_mem: dict[tuple[str, int], int] = defaultdict(int)
    replicas_seen: dict[str, Counter[int]] = defaultdict(Counter)
    nodes_of: dict[str, list[str]] = defaultdict(list)
    mentioned: set[str] = set()  # jobs whose only placements name unknown nodes (reported once, as such)

    for p in allocation.placements:
        job, node = jobs.get(p.job), nodes.get(p.node)
        if job is None:
            out.append(
                Violation(
                    Kind.UNKNOWN_JOB, f"placement names job {p.job!r}, which the problem does not have", p.job, p.node
                )
            )
            continue
        if node is None:
            mentioned.add(p.job)
            out.append(
                Violation(
                    Kind.UNKNOWN_NODE,
                    f"job {p.job!r} is placed on node {p.node!r}, which the problem does not have",
                    p.job,
                    p.node,
                )
            )
            continue
        where = f"job {p.job!r} replica {p.replica} on node {p.node!r}"
        if not 0 <= p.replica < job.replicas:
            out.append(
                Violation(Kind.REPLICA_RANGE, f"{where}: replica index not in 0..{job.replicas - 1}", p.job, p.node)
            )
        replicas_seen[p.job][p.replica] += 1
        nodes_of[p.job].append(p.node)
        cpu[p.node] += job.cpu
        mem[p.node] += job.memory

        # The GPUs this replica holds must match what it asked for.
        want = job.gpus_used
        if len(p.gpus) != want or len(set(p.gpus)) != len(p.gpus) or p.gpu_milli != job.per_gpu_milli:
            out.append(
                Violation(
                    Kind.GPU_SHAPE,
                    f"{where}: holds GPUs {list(p.gpus)} at {p.gpu_milli} milli each, "
                    f"asked for {want} GPU(s) at {job.per_gpu_milli} milli",
                    p.job,
                    p.node,
                    "gpu",
                )
            )
        for g in p.gpus:
            if not 0 <= g < node.gpus:
                out.append(
                    Violation(Kind.GPU_INDEX, f"{where}: GPU index {g} not in 0..{node.gpus - 1}", p.job, p.node, "gpu")
                )
                continue
            if job.gpus:
                gpu_whole[(p.node, g)].append(p.job)
            elif job.gpu_milli:
                gpu_share[(p.node, g)].append((p.job, job.gpu_milli))
            if job.gpu_memory:
                gpu_mem[(p.node, g)] += job.gpu_memory
        if want and job.gpu_models and node.gpu_model not in job.gpu_models:
            allowed = ", ".join(sorted(job.gpu_models))
            out.append(
                Violation(
                    Kind.GPU_MODEL,
                    f"{where}: GPU model {node.gpu_model!r} not in {{{allowed}}}",
                    p.job,
                    p.node,
                    "gpu_model",
                )
            )
        for label, value in job.node_selector.items():
            if node.labels.get(label) != value:
                out.append(
                    Violation(
                        Kind.NODE_SELECTOR,
                        f"{where}: label {label}={node.labels.get(label)!r}, selector wants {value!r}",
                        p.job,
                        p.node,
                        "labels",
                    )
                )

    # Capacity per node and per GPU.
    for name in cpu:
        node = nodes[name]
        if cpu[name] > node.cpu:
            out.append(
                Violation(
                    Kind.CPU, f"node {name!r}: {cpu[name]} milli-CPU placed, capacity {node.cpu}", None, name, "cpu"
                )
            )
        if mem[name] > node.memory:
            out.append(
                Violation(
                    Kind.MEMORY, f"node {name!r}: {mem[name]} MiB placed, capacity {node.memory}", None, name, "memory"
                )
            )
    for (name, g), holders in gpu_whole.items():
        sharers = gpu_share.get((name, g), [])
        if len(holders) > 1 or sharers:
            who = sorted(set(holders) | {j for j, _ in sharers})
            out.append(
                Violation(
                    Kind.GPU_EXCLUSIVE,
                    f"node {name!r} GPU {g}: whole GPU held with others {who}",
                    holders[0],
                    name,
                    "gpu",
                )
            )
    for (name, g), sharers in gpu_share.items():
        total = sum(m for _, m in sharers)
        if total > MILLI:
            out.append(
                Violation(
                    Kind.GPU_SHARE, f"node {name!r} GPU {g}: shares sum to {total} milli", sharers[0][0], name, "gpu"
                )
            )
    for (name, g), used in gpu_mem.items():
        cap = nodes[name].gpu_memory
        if used > cap:
            out.append(
                Violation(
                    Kind.GPU_MEMORY,
                    f"node {name!r} GPU {g}: {used} MiB GPU memory placed, capacity {cap}",
                    None,
                    name,
                    "gpu_memory",
                )
            )

    # Per job: duplicates, gangs, spread rules, and every job accounted for.
    unplaced = Counter(u.job for u in allocation.unplaced)
    for name, count in unplaced.items():
        if name not in jobs:
            out.append(
                Violation(Kind.UNKNOWN_JOB, f"unplaced list names job {name!r}, which the problem does not have", name)
            )
        if count > 1:
            out.append(Violation(Kind.DUPLICATE_UNPLACED, f"job {name!r} is listed {count} times as unplaced", name))
    for name, seen in replicas_seen.items():
        job = jobs[name]
        for replica, count in seen.items():
            if count > 1:
                out.append(
                    Violation(Kind.DUPLICATE_REPLICA, f"job {name!r} replica {replica} is placed {count} times", name)
                )
        placed, need = len(seen), job.min_replicas or job.replicas
        if placed < need:
            out.append(Violation(Kind.GANG, f"job {name!r}: {placed} of {need} required replicas placed", name))
        hosts = set(nodes_of[name])
        if job.placement is PlacementRule.SINGLE_NODE and len(hosts) > 1:
            out.append(Violation(Kind.SINGLE_NODE, f"job {name!r} spans nodes {sorted(hosts)}", name))
        if job.placement is PlacementRule.SPREAD and len(hosts) < len(nodes_of[name]):
            out.append(
                Violation(Kind.SPREAD, f"job {name!r} has {len(nodes_of[name])} replicas on {len(hosts)} nodes", name)
            )
        if name in unplaced:
            out.append(Violation(Kind.PLACED_AND_UNPLACED, f"job {name!r} is both placed and listed as unplaced", name))
    for name in jobs:
        if name not in replicas_seen and name not in unplaced and name not in mentioned:
            out.append(Violation(Kind.MISSING_JOB, f"job {name!r} is neither placed nor listed as unplaced", name))

    # Running jobs that may not be preempted stay exactly where they run.
    if problem.current is not None:
        before = problem.current.by_job()
        now = allocation.by_job()
        for name, places in before.items():
            job = jobs.get(name)
            if job is None or job.preemptible:
                continue
            if _where(now.get(name, [])) != _where(places):
                out.append(
                    Violation(
                        Kind.NOT_PREEMPTIBLE,
                        f"job {name!r} runs on {sorted(p.node for p in places)} and may not be moved, rebound to other GPUs or stopped",
                        name,
                    )
                )
    return out


#: What no running allocation can be, whatever the problem's jobs and nodes became: a placement naming
#: an unknown job or node, a replica index out of range or twice, a GPU index out of range, a GPU held
#: whole by two replicas, or a replica holding other GPUs than its job asks for.
STRUCTURAL_RULES = frozenset(
    {
        Kind.UNKNOWN_JOB,
        Kind.UNKNOWN_NODE,
        Kind.REPLICA_RANGE,
        Kind.DUPLICATE_REPLICA,
        Kind.GPU_INDEX,
        Kind.GPU_EXCLUSIVE,
        Kind.GPU_SHAPE,
    }
)
#: What a running job breaks when it no longer fits where it runs (a node shrank, a job's needs or
#: constraints changed): the problem is then solved only by moving or stopping it.
FIT_RULES = (
    frozenset(Kind)
    - STRUCTURAL_RULES
    - {
        Kind.MISSING_JOB,
        Kind.DUPLICATE_UNPLACED,
        Kind.PLACED_AND_UNPLACED,
        Kind.NOT_PREEMPTIBLE,
    }
)


def check_running(problem: Problem, allocation: Allocation, label: str = "current", *, fits: bool = True) -> None:
    """Raise :class:`ProblemError` when ``allocation``, given as what runs now on ``problem``, is not
    something that can run: a GPU index out of range, a double-booked GPU, a duplicate replica...
    (:data:`STRUCTURAL_RULES`); with ``fits``, also a running job that no longer fits where it runs
    (a node over capacity, a GPU model or selector no longer matched, an incomplete gang:
    :data:`FIT_RULES`).

    The error names the first offending placement (``previous.placements[3]``) and says it is the
    caller's input: engines take what runs now as given, so an invalid one would otherwise surface as
    an engine's invalid answer. ``label`` is the name of the allocation in the caller's terms.
    """
    if not isinstance(allocation, Allocation):
        raise ProblemError(label, allocation, "is not an Allocation")
    if _runs(problem, allocation):
        return  # the usual case, checked with arrays; the verifier below only words what is wrong
    rules = STRUCTURAL_RULES | FIT_RULES if fits else STRUCTURAL_RULES
    found = [v for v in verify(problem, allocation.replace(unplaced=())) if v.kind in rules]
    if not found:
        return
    v = found[0]
    i = _culprit(allocation, v)
    more = f" ({len(found) - 1} more)" if len(found) > 1 else ""
    why = "is not a valid running placement" if v.kind in STRUCTURAL_RULES else "no longer fits where it runs"
    if i is None:
        raise ProblemError(label, v.job or v.node, f"{why} (the caller's input): {v}{more}")
    raise ProblemError(
        f"{label}.placements[{i}]", allocation.placements[i].job, f"{why} (the caller's input): {v}{more}"
    )


def _runs(problem: Problem, allocation: Allocation) -> bool:
    """Whether ``allocation`` breaks none of :data:`STRUCTURAL_RULES` and :data:`FIT_RULES`: the same
    rules as :func:`verify`, checked with numpy in a fraction of its time (a controller passes what runs
    now at every step). False sends the caller to :func:`verify` for the words."""
    placements = allocation.placements
    if not placements:
        return True
    jobs, nodes = problem.job_index, problem.node_index
    count = len(placements)
    job = np.empty(count, dtype=np.int64)
    node = np.empty(count, dtype=np.int64)
    replica = np.empty(count, dtype=np.int64)
    milli = np.empty(count, dtype=np.int64)
    held = np.empty(count, dtype=np.int64)
    gpus: list[int] = []
    for k, p in enumerate(placements):
        j, n = jobs.get(p.job), nodes.get(p.node)
        if j is None or n is None:
            return False
        job[k], node[k], replica[k], milli[k], held[k] = j, n, p.replica, p.gpu_milli, len(p.gpus)
        gpus.extend(p.gpus)
    whole, share = problem.job_gpus[job], problem.job_share[job]
    wanted = np.where(whole > 0, whole, (share > 0).astype(np.int64))
    per_gpu = np.where(whole > 0, MILLI, share)
    if (replica >= problem.job_replicas[job]).any() or (held != wanted).any() or (milli != per_gpu).any():
        return False
    if len(np.unique(job * (int(replica.max()) + 1) + replica)) != count:
        return False  # a replica placed twice
    owner = np.repeat(np.arange(count), held)
    index = np.asarray(gpus, dtype=np.int64)
    slots = max(problem.max_gpus, 1)
    if (index >= problem.node_gpus[node[owner]]).any():
        return False
    flat = node[owner] * slots + index
    if len(np.unique(owner * slots + index)) != len(index):
        return False  # a GPU listed twice by one replica
    size = len(problem.nodes) * slots
    if (np.bincount(flat, weights=milli[owner], minlength=size) > MILLI).any():
        return False  # a whole GPU shared, or shares above one GPU
    gpu_memory = problem.job_gpu_memory[job][owner]
    used = np.bincount(flat, weights=gpu_memory, minlength=size)
    if (used > np.repeat(problem.node_gpu_memory, slots)).any():
        return False
    demand = problem.demand[job]
    for column in (0, 1):  # cpu, memory
        if (
            np.bincount(node, weights=demand[:, column], minlength=len(problem.nodes)) > problem.capacity[:, column]
        ).any():
            return False
    # Per job, over the jobs that run: gang complete, GPU model and selector, single-node and spread.
    per_job = np.bincount(job, minlength=len(problem.jobs))
    running = np.flatnonzero(per_job)
    if (per_job[running] < problem.job_min_replicas[running]).any():
        return False  # an incomplete gang
    pairs = np.unique(job * len(problem.nodes) + node)
    hosts_of = np.bincount(pairs // len(problem.nodes), minlength=len(problem.jobs))
    order = np.argsort(job, kind="stable")
    starts = np.searchsorted(job[order], running)
    for j, start in zip(running.tolist(), starts.tolist(), strict=True):
        spec = problem.jobs[j]
        if spec.placement is PlacementRule.SINGLE_NODE and hosts_of[j] > 1:
            return False
        if spec.placement is PlacementRule.SPREAD and hosts_of[j] < per_job[j]:
            return False
        if spec.gpu_models or spec.node_selector:
            hosts = node[order[start : start + per_job[j]]]
            if not problem.allowed_nodes(j)[hosts].all():
                return False  # GPU model or node selector
    return True


def _culprit(allocation: Allocation, v: Violation) -> int | None:
    """The index of the first placement a violation is about (its job and node, else its job or node)."""
    first_job = first_node = None
    for i, p in enumerate(allocation.placements):
        if p.job == v.job and p.node == v.node:
            return i
        if first_job is None and v.job is not None and p.job == v.job:
            first_job = i
        if first_node is None and v.node is not None and p.node == v.node:
            first_node = i
    return first_job if first_job is not None else first_node


def _where(places: list[Placement]) -> Counter[tuple[str, tuple[int, ...]]]:
    """Where the replicas of a job run: node and GPU indices, as a multiset."""
    return Counter((p.node, tuple(sorted(p.gpus))) for p in places)
