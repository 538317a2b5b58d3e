"""The compression (``optalloc.models.compress``) keeps every node and job with its exact numbers.

An engine test: it reads optalloc's own program back, so it lives here and not in ``optalloc.testing``
(which checks answers independently of any engine).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optalloc import Job, Node, Problem
from optalloc.testing import strategies as ost
from optalloc.testing._bruteforce import place_all
from optalloc.testing._ledger import Ledger, least

RELAXED = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NODES = (Node("n0", cpu=4000, memory=4096, gpus=2, gpu_model="T4"), Node("n1", cpu=4000, memory=4096))
JOBS = (Job("gpu", cpu=1000, gpus=1), Job("share", cpu=1000, gpu_milli=500), Job("cpu", cpu=3000))
PROBLEM = Problem(NODES, JOBS)


def _listing(errors: list[str]) -> str:
    return "".join(f"\n  - {e}" for e in errors)


def assert_compression_roundtrip(problem: Problem, *, allow_migration: bool = False, group_nodes: bool = True) -> None:
    """``optalloc.models.compress(problem)`` keeps every node and job, with its exact numbers.

    Reading the compression back must give the problem again: every node in exactly one node
    type, whose free CPU, memory, fully free GPUs and partly used GPUs (free milli, free GPU MiB)
    are the node's own after the fixed placements (recounted here, independently); every job
    either fixed where it runs (exactly the running jobs that may not move), or left out as
    unhostable (and then truly placeable nowhere), or in job classes whose per-replica demand,
    rule, value and replica range are its own. Arguments as for ``compress``.
    """
    import optalloc.models

    compress = optalloc.models.compress  # looked up at call time: a test swaps it for a lying one
    comp = compress(problem, allow_migration=allow_migration, group_nodes=group_nodes)
    errors: list[str] = []

    # What may not move stays fixed: every running job, or only the non-preemptible ones.
    current = problem.current.placements if problem.current is not None else ()
    jobs_by = {j.name: j for j in problem.jobs}
    stay = [p for p in current if not allow_migration or not jobs_by[p.job].preemptible]
    if sorted(map(repr, comp.fixed.placements)) != sorted(map(repr, stay)):
        errors.append(f"fixed placements {list(comp.fixed.placements)}, expected {stay}")

    # Nodes: one type each, with the node's free capacity after the fixed placements.
    ledger = Ledger(problem)
    for placement in comp.fixed.placements:
        ledger.take_placement(placement)
    typed = [n for t in comp.types for n in t.nodes]
    if sorted(typed) != list(range(len(problem.nodes))):
        errors.append(f"node types hold nodes {sorted(typed)}, expected each of 0..{len(problem.nodes) - 1} once")
    model_index = {m: k for k, m in enumerate(problem.model_names)}
    for t, nt in enumerate(comp.types):
        for n in nt.nodes:
            node = problem.nodes[n]
            used = ledger.used[n]
            free = (
                node.cpu - ledger.cpu[n],
                node.memory - ledger.memory[n],
                sum(1 for u in used if u == 0),
                tuple(
                    sorted(
                        (1000 - u, node.gpu_memory - m)
                        for u, m in zip(used, ledger.gpu_mem[n], strict=True)
                        if 0 < u < 1000
                    )
                ),
                node.gpu_memory,
                model_index.get(node.gpu_model, -1) if node.gpus and node.gpu_model else -1,
            )
            stated = (nt.cpu, nt.memory, nt.full_gpus, tuple(sorted(nt.partial)), nt.gpu_memory, nt.model)
            if free != stated:
                errors.append(f"node {node.name!r} in type {t}: type states {stated}, the node has {free}")
            if int(comp.node_type[n]) != t:
                errors.append(f"node {node.name!r}: node_type says {int(comp.node_type[n])}, it is in type {t}")

    # Jobs: fixed, unhostable or classed — one of them — with their own numbers.
    fixed_jobs = comp.fixed.placed_jobs
    owner: dict[int, set[int]] = {}
    for c, jc in enumerate(comp.classes):
        for j in jc.jobs:
            owner.setdefault(j, set()).add(jc.pool if jc.pool >= 0 else -1 - c)
            job = problem.jobs[j]
            own = (job.cpu, job.memory, job.gpus, job.gpu_milli, job.gpu_memory, job.placement)
            stated_job = (jc.cpu, jc.memory, jc.gpus, jc.share, jc.gpu_memory, jc.placement)
            if own != stated_job:
                errors.append(f"job {job.name!r} in class {c}: class states {stated_job}, the job asks {own}")
            if jc.value != int(problem.replica_value[j]):
                errors.append(
                    f"job {job.name!r} in class {c}: value {jc.value}, objective says {problem.replica_value[j]}"
                )
            if not least(job) <= jc.min_replicas <= jc.replicas <= job.replicas:
                errors.append(
                    f"job {job.name!r} in class {c}: replicas {jc.min_replicas}..{jc.replicas}"
                    f" outside the job's {least(job)}..{job.replicas}"
                )
    for j, job in enumerate(problem.jobs):
        places = [
            name for name, held in (("fixed", job.name in fixed_jobs), ("unhostable", j in comp.unhostable)) if held
        ]
        if j in owner:
            places.append("classes")
            if len(owner[j]) > 1:
                errors.append(f"job {job.name!r} belongs to {len(owner[j])} unrelated classes")
        if len(places) != 1:
            errors.append(f"job {job.name!r} is {' and '.join(places) or 'nowhere'} (expected exactly one)")
        if j in comp.unhostable and place_all(problem.replace(jobs=(job,), current=None)) is not None:
            errors.append(f"job {job.name!r} is called unhostable, yet it fits the empty cluster")
    if errors:
        raise AssertionError("the compression does not preserve the problem:" + _listing(errors))


# Compression -----------------------------------------------------------------------------------------------
@RELAXED
@given(ost.problems(max_jobs=6, max_nodes=4, with_running=True), st.booleans(), st.booleans())
def test_compression_preserves_generated_problems(problem, allow_migration, group_nodes):
    assert_compression_roundtrip(problem, allow_migration=allow_migration, group_nodes=group_nodes)


def test_compression_check_names_a_node_whose_type_misstates_its_capacity(monkeypatch):
    import dataclasses

    import optalloc.models

    real = optalloc.models.compress

    def lying(problem, **kwargs):
        comp = real(problem, **kwargs)
        first = dataclasses.replace(comp.types[0], cpu=comp.types[0].cpu + 1)
        return dataclasses.replace(comp, types=(first, *comp.types[1:]))

    monkeypatch.setattr(optalloc.models, "compress", lying)
    with pytest.raises(AssertionError, match=r"node 'n0' in type 0: type states \(4001,"):
        assert_compression_roundtrip(PROBLEM)
