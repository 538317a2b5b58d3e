"""brute_force: the exact optimum of tiny problems, the reference every method is held to."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optalloc import Allocation, Job, Node, ObjectiveWeights, Placement, Problem, Status, Unplaced, verify
from optalloc.core import evaluate
from optalloc.testing import SearchTooLarge, assert_no_job_lost, assert_valid, brute_force, objective
from optalloc.testing import strategies as ost
from optalloc.testing._bruteforce import place_all

RELAXED = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_brute_force_packs_whole_gpus_better_than_first_fit():
    nodes = [Node(f"n{i}", cpu=8000, memory=8192, gpus=4, gpu_model="T4") for i in range(2)]
    jobs = [Job(f"g{k}", gpus=g) for k, g in enumerate([3, 3, 2, 2, 1])]
    best = brute_force(Problem(nodes, jobs))
    assert best.status is Status.OPTIMAL and best.objective == best.bound == 8000
    assert {p.job for p in best.placements} in ({"g0", "g2", "g3", "g4"}, {"g1", "g2", "g3", "g4"})


def test_brute_force_puts_shares_on_one_gpu_to_leave_fewer_partial_gpus():
    problem = Problem(
        [Node("n0", cpu=1000, gpus=2, gpu_model="T4")], [Job("a", gpu_milli=300), Job("b", gpu_milli=300)]
    )
    best = brute_force(problem)
    assert best.objective == 599
    assert len({p.gpus for p in best.placements}) == 1


def test_brute_force_grows_elastic_jobs_and_respects_single_node():
    problem = Problem(
        [Node("n0", cpu=3000, memory=1024), Node("n1", cpu=2000, memory=1024)],
        [Job("e", cpu=1000, replicas=4, min_replicas=2, placement="single-node")],
    )
    best = brute_force(problem)
    assert [p.node for p in best.placements] == ["n0"] * 3
    assert best.objective == 30


def test_brute_force_keeps_pinned_jobs_and_numbers_moved_replicas_freely():
    nodes = [Node(f"n{i}", cpu=2000, memory=1024, gpus=1, gpu_model="T4") for i in range(2)]
    jobs = [Job("pinned", gpus=1, preemptible=False), Job("movable", gpus=1), Job("urgent", gpus=1, priority=1)]
    current = Allocation((Placement("pinned", 0, "n0", (0,), 1000), Placement("movable", 0, "n1", (0,), 1000)))
    problem = Problem(nodes, jobs, current)
    free = brute_force(problem)
    kept = brute_force(problem, keep_running=True)
    # Stopping the movable job costs its value and a restart (200); there is nowhere to move it.
    assert free.objective == 1000 + 10000 - 200
    assert kept.objective == 2000
    assert_valid(problem, free)
    assert_valid(problem, kept)


def test_brute_force_is_infeasible_when_a_pinned_job_no_longer_fits():
    nodes = [Node("n0", cpu=1000, memory=1024)]
    current = Allocation((Placement("a", 0, "n0"),))
    problem = Problem(nodes, [Job("a", cpu=2000, preemptible=False)], current)
    assert brute_force(problem).status is Status.INFEASIBLE


def test_brute_force_refuses_problems_that_are_not_tiny():
    nodes = [Node(f"n{i}", cpu=64000, memory=65536, gpus=8, gpu_model="T4") for i in range(6)]
    jobs = [Job(f"j{k}", cpu=100, gpu_milli=100 + k, replicas=3) for k in range(10)]
    with pytest.raises(SearchTooLarge, match="not tiny"):
        brute_force(Problem(nodes, jobs), budget=10_000)


def test_brute_force_handles_lexicographic_weights():
    nodes = [Node("n0", cpu=1000, gpus=2, gpu_model="T4")]
    jobs = [Job("a", gpu_milli=300), Job("b", gpu_milli=800)]
    lex = brute_force(Problem(nodes, jobs, weights=ObjectiveWeights(lexicographic=True)))
    assert lex.objective == 1100


@RELAXED
@given(ost.problems(max_jobs=5, max_nodes=3, with_running=True))
def test_brute_force_answers_are_valid_complete_and_evaluated(problem):
    best = brute_force(problem)
    assert best.status is Status.OPTIMAL
    assert_valid(problem, best)
    assert_no_job_lost(problem, best, known_reasons=True)
    assert best.objective == evaluate(problem, best).total


@RELAXED
@given(st.data(), ost.problems(max_jobs=5, max_nodes=3, with_running=True))
def test_no_generated_valid_allocation_beats_the_brute_force(data, problem):
    best = brute_force(problem).objective
    for _ in range(3):
        answer = data.draw(ost.allocations(problem))
        assert objective(problem, answer) <= best


@RELAXED
@given(ost.problems(max_jobs=5, max_nodes=3, with_running=True))
def test_keeping_running_jobs_never_beats_letting_them_move(problem):
    kept = brute_force(problem, keep_running=True)
    assert kept.objective is not None and kept.objective <= brute_force(problem).objective
    assert verify(problem, kept) == []


def test_stopping_a_running_job_costs_at_least_as_much_as_moving_it():
    nodes = [Node("n0", cpu=1000, memory=1024), Node("n1", cpu=1000, memory=1024)]
    problem = Problem(nodes, [Job("runner", cpu=500)], Allocation((Placement("runner", 0, "n0"),)))
    moved = Allocation((Placement("runner", 0, "n1"),))
    stopped = Allocation(unplaced=(Unplaced("runner", "not selected"),))
    assert evaluate(problem, stopped).total <= evaluate(problem, moved).total


# Problem.hostable against exhaustive search ------------------------------------------------------------------
@RELAXED
@given(ost.problems(min_jobs=1, max_jobs=1, max_nodes=3))
def test_hostable_never_turns_away_a_job_that_fits_the_empty_cluster(problem):
    if not problem.hostable(0):
        assert place_all(problem) is None


def test_hostable_rejects_a_gang_larger_than_the_cluster():
    problem = Problem([Node("n0", cpu=8000, memory=8192, gpus=4, gpu_model="T4")], [Job("wide", gpus=4, replicas=2)])
    assert place_all(problem) is None
    assert not problem.hostable(0)


def test_hostable_counts_gpu_memory_when_shares_must_sit_on_one_node():
    node = Node("n0", cpu=8000, memory=8192, gpus=1, gpu_model="T4", gpu_memory=16000)
    job = Job("pair", gpu_milli=500, gpu_memory=12000, replicas=2, placement="single-node")
    problem = Problem([node], [job])
    assert place_all(problem) is None
    assert not problem.hostable(0)
