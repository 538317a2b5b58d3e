"""Hypothesis strategies for optalloc: nodes, clusters, jobs, problems and allocations.

Use them in your own property-based tests::

    from hypothesis import given
    from optalloc.testing import strategies as ost

    @given(ost.problems(max_jobs=6, feasible=True))
    def test_my_scheduler_places_every_job_of_a_feasible_problem(problem): ...

Every strategy takes keyword-only arguments, validated when the strategy is built (a bad one raises
:class:`hypothesis.errors.InvalidArgument` at once, not at the first draw). Defaults are small —
a few nodes, a few jobs, round quantities — so that failures shrink to readable counterexamples.

Quantities are the core's canonical integers: CPU in milli-cores (nodes in whole cores, jobs in
quarters of a core), memory in MiB (nodes in GiB, jobs in 512 MiB steps), GPU memory in MiB per
GPU, GPU shares in milli-GPU.

Job *kinds* (``kinds=``) say what a replica asks of GPUs: ``cpu-only``, ``whole-gpu`` (1..max_gpus
whole GPUs) or ``gpu-share`` (a share of one GPU). Job *features* (``features=``) switch on what
else may vary: ``gang`` (several replicas, all or none), ``elastic`` (a ``min_replicas`` below
``replicas``), ``gpu-models`` (allowed GPU models), ``node-selector`` (a ``zone`` label), ``pack``,
``spread`` and ``single-node`` placements, ``priority`` (0..2), ``arrival`` (0..100 s),
``duration`` (1..3600 s or unknown) and ``gpu-memory`` (MiB needed per GPU). Node *features* are
``gpu-memory`` (MiB per GPU stated) and ``labels`` (a ``zone`` label).
"""

from __future__ import annotations

from optalloc.testing._allocation_strategies import allocations
from optalloc.testing._breakers import BrokenAllocation
from optalloc.testing._problem_strategies import (
    GPU_MODELS,
    JOB_FEATURES,
    JOB_KINDS,
    NODE_FEATURES,
    ZONES,
    clusters,
    jobs,
    nodes,
    problems,
)

__all__ = [
    "GPU_MODELS",
    "JOB_FEATURES",
    "JOB_KINDS",
    "NODE_FEATURES",
    "ZONES",
    "BrokenAllocation",
    "allocations",
    "clusters",
    "jobs",
    "nodes",
    "problems",
]
