"""check_running: is what runs now (``Problem.current``, ``previous=``) something that can run?

What runs now is the caller's input, given at every step of a controller, so it is checked first with
the problem's numpy views (:func:`runs`, a fraction of :func:`~optalloc.core.verify.verify`'s time);
only when that finds something wrong does :func:`~optalloc.core.verify.verify` word the error. The two
are kept apart on purpose: ``verify`` shares no code and none of ``Problem``'s views with the engines,
this fast path does (a property test, tests/test_cycle.py, pins that both agree on every rule).
"""

from __future__ import annotations

import numpy as np

from optalloc.core.allocation import Allocation
from optalloc.core.errors import ProblemError
from optalloc.core.job import MILLI, PlacementRule
from optalloc.core.problem import Problem
from optalloc.core.verify import Kind, Violation, verify

__all__ = ["FIT_RULES", "STRUCTURAL_RULES", "check_running", "runs"]

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
    if runs(problem, allocation):
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


def runs(problem: Problem, allocation: Allocation) -> bool:
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
