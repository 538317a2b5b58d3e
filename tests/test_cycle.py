"""The scheduler's cycle: ``solve(problem, previous=last_answer)`` every cycle, as the README shows it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optalloc
from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError
from optalloc.solve import with_previous

NODES = (
    Node("n0", cpu=16_000, memory=65_536, gpus=4, gpu_model="T4"),
    Node("n1", cpu=16_000, memory=65_536, gpus=4, gpu_model="T4"),
)


def cycle_one() -> tuple[Problem, Allocation]:
    problem = Problem(NODES, (Job("a", cpu=1000, gpus=2), Job("b", cpu=1000, gpus=1), Job("c", cpu=500)))
    return problem, optalloc.solve(problem, "best-fit")


def test_a_job_that_finished_between_two_cycles_is_reported_as_finished_not_an_error():
    problem, last = cycle_one()
    after = problem.replace(jobs=(problem.jobs[1], problem.jobs[2], Job("d", cpu=1000, gpus=1)))
    answer = optalloc.solve(after, "best-fit", previous=last)
    changes = answer.diff(last, after)
    assert changes.finished == ("a",) and changes.stops == () and changes.starts == ("d",)
    assert changes.migrations == ()  # b and c stay where they ran
    assert bool(changes)  # d starts
    assert answer.diff(last).stops == ("a",)  # without the problem, diff cannot tell finished from stopped


def test_only_finished_jobs_is_an_empty_change_set():
    problem, last = cycle_one()
    after = problem.replace(jobs=problem.jobs[1:])
    changes = optalloc.solve(after, "best-fit", previous=last).diff(last, after)
    assert changes.finished == ("a",) and not changes


def test_a_job_on_a_node_that_left_is_placed_again():
    problem, last = cycle_one()
    where = {p.job: p.node for p in last.placements}
    gone = where["a"]
    kept = tuple(n for n in NODES if n.name != gone)
    after = problem.replace(nodes=kept)
    answer = optalloc.solve(after, "best-fit", previous=last)
    assert {p.node for p in answer.placements} <= {n.name for n in kept}
    assert "a" in answer.placed_jobs or "a" in answer.unplaced_jobs
    merged = with_previous(after, last)
    assert all(p.node != gone for p in merged.current.placements)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            Placement("b", 0, "n0", (9,), 1000),
            r"^previous\.placements\[1\]: 'b' is not a valid running placement \(the caller's input\): "
            r"gpu index out of range: job 'b' replica 0 on node 'n0': GPU index 9 not in 0\.\.3$",
        ),
        (
            Placement("b", 0, "n0", (0,), 1000),
            r"^previous\.placements\[0\]: 'a' is not a valid running placement \(the caller's input\): "
            r"whole gpu not exclusive: node 'n0' GPU 0: whole GPU held with others \['a', 'b'\]",
        ),
    ],
)
def test_an_invalid_previous_is_the_callers_input_naming_the_placement(bad, expected):
    problem = Problem(NODES, (Job("a", gpus=2), Job("b", gpus=1)))
    previous = Allocation((Placement("a", 0, "n0", (0, 1), 1000), bad))
    for method in ("best-fit", "cpsat", "auto"):
        with pytest.raises(ProblemError, match=expected):
            optalloc.solve(problem, method, previous=previous, time_limit=2)


def test_an_invalid_current_in_the_problem_is_named_as_well():
    current = Allocation((Placement("a", 0, "n0", (7,), 1000),))
    problem = Problem(NODES, (Job("a", gpus=1),), current=current)
    with pytest.raises(ProblemError, match=r"^problem\.current\.placements\[0\]: 'a' is not a valid running"):
        optalloc.solve(problem, "best-fit")


def test_a_running_job_that_no_longer_fits_is_named_as_the_callers_input():
    current = Allocation((Placement("a", 0, "n0", (0,), 1000),))
    problem = Problem(NODES, (Job("a", cpu=20_000, gpus=1),), current=current)  # its node shrank below it
    for method, migration in (("best-fit", False), ("cpsat", True), ("auto", True)):
        with pytest.raises(ProblemError, match=r"^problem\.current\.placements\[0\]: 'a' no longer fits where it runs"):
            optalloc.solve(problem, method, allow_migration=migration, time_limit=2)
    # Without verification the engine's own answer is returned as data (status infeasible for a pinned job).
    pinned = problem.replace(jobs=(Job("a", cpu=20_000, gpus=1, preemptible=False),))
    assert optalloc.solve(pinned, "cpsat", time_limit=5, verify=False).status.value == "infeasible"


def test_a_job_in_both_current_and_previous_must_run_at_the_same_places():
    problem, last = cycle_one()
    a = next(p for p in last.placements if p.job == "a")
    elsewhere = Allocation((Placement("a", 0, "n1" if a.node == "n0" else "n0", (2, 3), 1000),))
    with pytest.raises(ProblemError, match=r"^previous\.placements\[\d\]: 'a' runs elsewhere in problem\.current"):
        with_previous(problem.replace(current=elsewhere), last)
    same = with_previous(problem.replace(current=Allocation((a,))), last)
    assert len(same.current.placements) == len(last.placements)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda p: optalloc.solve(p, previous="x"), r"^previous: 'x' is not an Allocation"),
        (lambda p: optalloc.solve(p, 7), r"^method: 7 is not a method name"),
        (
            lambda p: optalloc.solve(p, options={"time_limit": 1}),
            r"^options: \{'time_limit': 1\} is not a SolveOptions",
        ),
        (lambda p: optalloc.solve("p"), r"^problem: 'str' is not a Problem"),
        (lambda p: optalloc.verify(p, None), r"^allocation: None is not an Allocation"),
        (lambda p: optalloc.verify(None, Allocation()), r"^problem: None is not a Problem"),
        (lambda p: Allocation().diff(None), r"^before: None is not an Allocation"),
    ],
)
def test_public_arguments_of_the_wrong_type_are_problem_errors(call, expected):
    problem, _ = cycle_one()
    with pytest.raises(ProblemError, match=expected):
        call(problem)


@given(data=st.data())
@settings(deadline=None)
def test_the_fast_running_check_agrees_with_the_verifier(data):
    """check_running decides with arrays and asks verify() only for the words: both must agree."""
    from optalloc.core.running import FIT_RULES, STRUCTURAL_RULES, runs
    from optalloc.testing import strategies

    problem = data.draw(strategies.problems(max_jobs=6, max_nodes=3))
    drawn = data.draw(strategies.allocations(problem, valid=data.draw(st.booleans())))
    allocation = getattr(drawn, "allocation", drawn)
    rules = STRUCTURAL_RULES | FIT_RULES
    expected = not [v for v in optalloc.verify(problem, allocation.replace(unplaced=())) if v.kind in rules]
    assert runs(problem, allocation) == expected
