"""Queue orderings: which job the heuristics consider next."""

import numpy as np
import pytest

from optalloc import Job, Node, Problem, ProblemError
from optalloc.heuristics import ORDERS, dominant_share, order


def _problem(jobs):
    return Problem([Node("n", cpu=8000, memory=1000, gpus=4, gpu_model="T4")], jobs)


def test_every_documented_ordering_is_offered():
    assert ORDERS == ("fcfs", "sjf", "ljf", "priority", "round-robin", "largest-demand-first", "gpu-first")


def test_gpu_first_puts_the_biggest_gpu_jobs_first_and_the_leanest_first_among_equals():
    p = _problem(
        [
            Job("cpu-only", cpu=100),
            Job("share", cpu=100, gpu_milli=500),
            Job("heavy", cpu=4000, memory=500, gpus=1),
            Job("lean", cpu=1000, memory=100, gpus=1),
            Job("gang", cpu=100, gpus=1, replicas=2),
            Job("four", cpu=8000, gpus=4),
        ]
    )
    assert [p.jobs[j].name for j in order(p, "gpu-first")] == ["four", "gang", "lean", "heavy", "share", "cpu-only"]


def test_fcfs_sorts_by_arrival_and_breaks_ties_by_input_position():
    p = _problem([Job("a", arrival=5), Job("b", arrival=1), Job("c", arrival=5), Job("d", arrival=0)])
    assert order(p, "fcfs").tolist() == [3, 1, 0, 2]


def test_sjf_puts_shortest_first_and_jobs_without_an_estimate_last():
    p = _problem([Job("a", duration=5), Job("b"), Job("c", duration=1), Job("d", duration=3), Job("e")])
    assert order(p, "sjf").tolist() == [2, 3, 0, 1, 4]


def test_ljf_puts_longest_first_and_jobs_without_an_estimate_last():
    p = _problem([Job("a", duration=5), Job("b"), Job("c", duration=1), Job("d", duration=3)])
    assert order(p, "ljf").tolist() == [0, 3, 2, 1]


def test_equal_durations_are_served_first_come_first_served():
    p = _problem([Job("a", duration=2, arrival=9), Job("b", duration=2, arrival=1)])
    assert order(p, "sjf").tolist() == [1, 0]
    assert order(p, "ljf").tolist() == [1, 0]


def test_priority_serves_highest_first_and_fcfs_within_a_level():
    p = _problem(
        [Job("a", priority=1, arrival=3), Job("b", priority=5, arrival=2), Job("c", priority=1, arrival=1), Job("d")]
    )
    assert order(p, "priority").tolist() == [1, 2, 0, 3]


def test_round_robin_rotates_the_head_of_the_fcfs_queue_by_the_round():
    p = _problem([Job(f"j{i}", arrival=i) for i in range(4)])
    assert order(p, "round-robin", round=0).tolist() == [0, 1, 2, 3]
    assert order(p, "round-robin", round=1).tolist() == [1, 2, 3, 0]
    assert order(p, "round-robin", round=6).tolist() == [2, 3, 0, 1]


def test_round_robin_gives_every_job_the_head_once_over_as_many_rounds_as_jobs():
    p = _problem([Job(f"j{i}", arrival=10 - i) for i in range(5)])
    heads = [int(order(p, "round-robin", round=r)[0]) for r in range(5)]
    assert sorted(heads) == [0, 1, 2, 3, 4]


def test_largest_demand_first_ranks_by_dominant_share_of_the_whole_job():
    p = Problem(
        [Node("n", cpu=10000, memory=1000, gpus=4, gpu_model="T4")],
        [
            Job("cpu-heavy", cpu=6000),  # 60% of CPU
            Job("gpu-gang", gpus=1, replicas=3),  # 75% of GPUs
            Job("small", cpu=100, memory=10),  # 1%
            Job("memory", memory=700),  # 70% of memory
        ],
    )
    assert dominant_share(p).round(2).tolist() == [0.6, 0.75, 0.01, 0.7]
    assert order(p, "largest-demand-first").tolist() == [1, 3, 0, 2]


def test_orderings_return_a_permutation_of_all_jobs():
    rng = np.random.default_rng(3)
    jobs = [
        Job(
            f"j{i}",
            cpu=int(rng.integers(0, 4000)),
            arrival=float(rng.integers(0, 5)),
            duration=None if rng.random() < 0.3 else float(rng.integers(1, 9)),
            priority=int(rng.integers(0, 3)),
        )
        for i in range(30)
    ]
    p = _problem(jobs)
    for name in ORDERS:
        assert sorted(order(p, name, round=7).tolist()) == list(range(30)), name


def test_unknown_ordering_is_a_problem_error_listing_the_valid_names():
    with pytest.raises(ProblemError, match=r"^order: 'lifo' is not one of fcfs, sjf, ljf, priority, round-robin"):
        order(_problem([Job("a")]), "lifo")


def test_negative_round_is_rejected():
    with pytest.raises(ProblemError, match="round: -1 is not a non-negative integer"):
        order(_problem([Job("a")]), "round-robin", round=-1)


def test_orderings_of_an_empty_problem_are_empty():
    p = _problem([])
    for name in ORDERS:
        assert order(p, name).tolist() == []
