"""optalloc.testing.invariants: each check passes on sound answers and fails with a readable message."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optalloc import Allocation, Job, Node, Placement, Problem, Unplaced
from optalloc.testing import (
    assert_bound_holds,
    assert_monotone_in_capacity,
    assert_no_job_lost,
    assert_optimal_dominates,
    assert_permutation_invariant,
    assert_roundtrip,
    assert_same_problem,
    assert_valid,
    brute_force,
    objective,
)
from optalloc.testing import strategies as ost

RELAXED = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

NODES = (Node("n0", cpu=4000, memory=4096, gpus=2, gpu_model="T4"), Node("n1", cpu=4000, memory=4096))
JOBS = (Job("gpu", cpu=1000, gpus=1), Job("share", cpu=1000, gpu_milli=500), Job("cpu", cpu=3000))
PROBLEM = Problem(NODES, JOBS)
GOOD = Allocation(
    (Placement("gpu", 0, "n0", (0,), 1000), Placement("share", 0, "n0", (1,), 500), Placement("cpu", 0, "n1")),
    method="good",
    status="feasible",
)
PARTIAL = Allocation(
    (Placement("gpu", 0, "n0", (0,), 1000),),
    (Unplaced("share", "not selected"), Unplaced("cpu", "insufficient capacity")),
    method="partial",
    status="feasible",
)


# assert_valid ------------------------------------------------------------------------------------------
def test_assert_valid_passes_a_valid_allocation():
    assert_valid(PROBLEM, GOOD)


def test_assert_valid_lists_every_violation_with_the_method():
    bad = GOOD.replace(placements=(*GOOD.placements, Placement("cpu", 0, "n1")))
    with pytest.raises(AssertionError) as err:
        assert_valid(PROBLEM, bad)
    text = str(err.value)
    assert text.startswith("'good' is not a valid allocation (2 violations):")
    assert "cpu capacity: node 'n1': 6000 milli-CPU placed, capacity 4000" in text
    assert "duplicate replica: job 'cpu' replica 0 is placed 2 times" in text


def test_assert_valid_shortens_long_lists():
    many = Problem(NODES, [Job(f"j{i}") for i in range(20)])
    with pytest.raises(AssertionError, match=r"\(20 violations\)[\s\S]*\.\.\. and 12 more"):
        assert_valid(many, Allocation())


# assert_no_job_lost -------------------------------------------------------------------------------------
def test_no_job_lost_passes_when_every_job_is_accounted_for():
    assert_no_job_lost(PROBLEM, GOOD)
    assert_no_job_lost(PROBLEM, PARTIAL, known_reasons=True)


def test_no_job_lost_names_lost_duplicated_and_unknown_jobs():
    bad = Allocation(
        (Placement("gpu", 0, "n0", (0,), 1000), Placement("ghost", 0, "n0")),
        (Unplaced("gpu", "x"), Unplaced("share", "x"), Unplaced("share", "x")),
        method="sloppy",
    )
    with pytest.raises(AssertionError) as err:
        assert_no_job_lost(PROBLEM, bad)
    text = str(err.value)
    assert "'sloppy' does not account for every job" in text
    assert "lost (neither placed nor unplaced): cpu" in text
    assert "placed and also listed as unplaced: gpu" in text
    assert "listed as unplaced more than once: share" in text
    assert "not jobs of the problem: ghost" in text


def test_no_job_lost_checks_reasons_only_when_asked():
    odd = PARTIAL.replace(unplaced=(Unplaced("share", "queue full"), Unplaced("cpu", "insufficient capacity")))
    assert_no_job_lost(PROBLEM, odd)
    with pytest.raises(AssertionError, match=r"reasons not in .*: share \('queue full'\)"):
        assert_no_job_lost(PROBLEM, odd, known_reasons=True)


# assert_optimal_dominates / assert_bound_holds ---------------------------------------------------------
def test_optimal_dominates_passes_and_names_the_allocation_that_beats_it():
    assert objective(PROBLEM, GOOD) == 1000 + 500 + 10 - 1
    assert_optimal_dominates(PROBLEM, GOOD, [PARTIAL, GOOD])
    with pytest.raises(AssertionError) as err:
        assert_optimal_dominates(PROBLEM, PARTIAL, [GOOD])
    assert str(err.value) == "'partial' is not optimal: objective 1000, yet\n  'good' reaches 1509, 509 above"


def test_bound_holds_reads_the_allocations_bound_or_the_one_given():
    assert_bound_holds(PROBLEM, GOOD.replace(bound=1509.0, objective=1509.0))
    assert_bound_holds(PROBLEM, GOOD, bound=1509.0000000001)
    with pytest.raises(AssertionError, match=r"bound 1500\.0 is below the objective 1509"):
        assert_bound_holds(PROBLEM, GOOD.replace(bound=1500.0))
    with pytest.raises(AssertionError, match="'good' has no bound to check"):
        assert_bound_holds(PROBLEM, GOOD)


def test_bound_holds_also_checks_the_reported_objective():
    with pytest.raises(AssertionError, match="below its reported objective 2000"):
        assert_bound_holds(PROBLEM, PARTIAL.replace(bound=1200.0, objective=2000.0))


# Permutations and capacity ------------------------------------------------------------------------------
def first_job_only(problem: Problem) -> Allocation:
    """An order-dependent 'solver': the first job alone, where brute force would put it."""
    if not problem.jobs:
        return Allocation()
    alone = brute_force(problem.replace(jobs=problem.jobs[:1], current=None))
    rest = tuple(Unplaced(j.name, "not selected") for j in problem.jobs[1:])
    return alone.replace(unplaced=alone.unplaced + rest)


def test_permutation_invariance_catches_an_order_dependent_solver():
    with pytest.raises(AssertionError, match=r"round 0, jobs shuffled: objective \d+, in the original order \d+"):
        assert_permutation_invariant(PROBLEM, first_job_only)


def test_monotone_in_capacity_catches_a_solver_that_gives_up_on_bigger_clusters():
    def timid(problem: Problem) -> Allocation:
        if len(problem.nodes) > len(NODES) or problem.nodes != NODES:
            return Allocation(unplaced=tuple(Unplaced(j.name, "not selected") for j in problem.jobs))
        return brute_force(problem)

    with pytest.raises(AssertionError, match=r"objective fell from 1509 to 0"):
        assert_monotone_in_capacity(PROBLEM, timid)


@RELAXED
@given(ost.problems(max_jobs=4, max_nodes=3, with_running=True), st.integers(0, 3))
def test_brute_force_is_permutation_invariant(problem, seed):
    assert_permutation_invariant(problem, brute_force, seed=seed)


@RELAXED
@given(ost.problems(max_jobs=4, max_nodes=3, with_running=True), st.integers(0, 3))
def test_brute_force_is_monotone_in_capacity(problem, seed):
    assert_monotone_in_capacity(problem, brute_force, seed=seed)


# Round trips ---------------------------------------------------------------------------------------------
def test_same_problem_names_the_first_difference():
    changed = PROBLEM.replace(jobs=(JOBS[0], Job("share", cpu=1000, gpu_milli=400), JOBS[2]))
    with pytest.raises(AssertionError, match=r"problems differ: jobs\[1\]\.gpu_milli: 500 before, 400 after"):
        assert_same_problem(PROBLEM, changed)
    with pytest.raises(AssertionError, match=r"problems differ: nodes: 2 items before, 1 after"):
        assert_same_problem(PROBLEM, PROBLEM.replace(nodes=NODES[:1]))


@RELAXED
@given(ost.problems(with_running=True), st.sampled_from([".json", ".yaml"]))
def test_problem_files_round_trip(problem, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        assert_roundtrip(problem, Path(tmp) / f"problem{suffix}")
