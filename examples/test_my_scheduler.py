"""Test your own allocator with optalloc.testing: run ``pytest examples/test_my_scheduler.py``.

``my_scheduler`` stands for your scheduler: a first-fit for whole GPUs and gangs. The tests draw
problems it claims to support, and check its answers with optalloc's verifier and a brute-force
optimum — not with optalloc's own solvers.
"""

from __future__ import annotations

from hypothesis import given, settings

from optalloc import Allocation, Placement, Problem, Unplaced
from optalloc.testing import assert_no_job_lost, assert_optimal_dominates, assert_valid, brute_force
from optalloc.testing import strategies as ost


def my_scheduler(problem: Problem) -> Allocation:
    """First fit, jobs in input order: each replica on the first node with room; a gang all or none."""
    cpu = {n.name: n.cpu for n in problem.nodes}
    memory = {n.name: n.memory for n in problem.nodes}
    free_gpus = {n.name: list(range(n.gpus)) for n in problem.nodes}
    placements, unplaced = [], []
    for job in problem.jobs:
        taken = []
        for replica in range(job.replicas):
            node = next(
                (n for n in cpu if cpu[n] >= job.cpu and memory[n] >= job.memory and len(free_gpus[n]) >= job.gpus),
                None,
            )
            if node is None:
                break
            gpus = tuple(free_gpus[node][: job.gpus])
            cpu[node] -= job.cpu
            memory[node] -= job.memory
            free_gpus[node] = free_gpus[node][job.gpus :]
            taken.append(Placement(job.name, replica, node, gpus, 1000 if job.gpus else 0))
        if len(taken) == job.replicas:
            placements += taken
            continue
        for p in taken:  # the gang does not fit: give back what it took
            cpu[p.node] += job.cpu
            memory[p.node] += job.memory
            free_gpus[p.node] = sorted(free_gpus[p.node] + list(p.gpus))
        unplaced.append(Unplaced(job.name, "insufficient capacity"))
    return Allocation(tuple(placements), tuple(unplaced), method="my-scheduler", status="feasible")


# What my_scheduler supports: CPU-only and whole-GPU jobs, gangs; no models, selectors or placement rules.
SUPPORTED = ost.problems(max_jobs=5, max_nodes=3, kinds=["cpu-only", "whole-gpu"], features=["gang"])


@settings(max_examples=50, deadline=None)
@given(SUPPORTED)
def test_my_scheduler_gives_valid_answers_and_loses_no_job(problem):
    answer = my_scheduler(problem)
    assert_valid(problem, answer)
    assert_no_job_lost(problem, answer)


@settings(max_examples=50, deadline=None)
@given(SUPPORTED)
def test_my_scheduler_never_beats_the_optimum(problem):
    assert_optimal_dominates(problem, brute_force(problem), [my_scheduler(problem)])
