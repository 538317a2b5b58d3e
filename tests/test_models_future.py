"""Admission control: the future value of free GPU capacity, and the jobs it holds back."""

import numpy as np
import pytest

from optalloc import Job, Node, Problem, ProblemError, solve, verify
from optalloc.core import ClusterState, Reason
from optalloc.models.future import future_value


def mixed_problem() -> Problem:
    """8 free GPUs; 4 whole-GPU jobs, 4 shares of 810 (their 190 left over fits nothing in the mix), a pair of 470."""
    nodes = [Node(f"n{i}", cpu=64_000, memory=256_000, gpus=2) for i in range(4)]
    jobs = [Job(f"s{i}", cpu=1000, gpu_milli=810) for i in range(4)]
    jobs += [Job(f"w{i}", cpu=1000, gpus=1) for i in range(4)]
    jobs += [Job(f"h{i}", cpu=1000, gpu_milli=470) for i in range(2)]
    return Problem(nodes, jobs)


def test_no_forecast_or_no_scarce_whole_gpus_means_no_future_value():
    problem = mixed_problem()
    state = ClusterState.of(problem)
    assert future_value(problem, state, 0.0) is None
    # 2 x the free capacity asks for 7.8 whole GPUs: fewer than the 8 free, so fresh GPUs are not scarce.
    assert future_value(problem, state, 2.0) is None
    only_shares = problem.replace(jobs=tuple(j for j in problem.jobs if j.gpu_milli))
    assert future_value(only_shares, ClusterState.of(only_shares), 5.0) is None


def test_future_value_of_a_gpu_is_what_the_forecast_mix_could_still_place_on_it():
    problem = mixed_problem()
    fv = future_value(problem, ClusterState.of(problem), 3.0)
    assert fv is not None
    v = lambda used: float(fv.at(np.array([used]))[0])  # noqa: E731
    assert v(0) == pytest.approx(0.95 * 1000)  # a fresh GPU: a whole-GPU job takes it
    assert v(810) == 0  # 190 left: nothing in the mix fits
    assert 0.95 * 470 <= v(470) <= 0.95 * 530  # 530 left: room for another 470 (the dual lies in between)
    assert v(1000) == 0
    assert fv.of_state(ClusterState.of(problem)) == pytest.approx(8 * v(0))


@pytest.mark.parametrize("method", ["cpsat", "auto", "milp"])
def test_a_forecast_holds_back_shares_that_would_strand_a_fresh_gpu(method):
    problem = mixed_problem()
    plain = solve(problem, method, time_limit=5, seed=0)
    assert "s0" in plain.placed_jobs or "s1" in plain.placed_jobs  # without a forecast: all that fits
    held = solve(problem, method, time_limit=5, seed=0, admission_forecast=3.0)
    assert verify(problem, held) == []
    reasons = {u.job: u.reason for u in held.unplaced}
    assert {f"s{i}" for i in range(4)} == set(reasons)
    assert set(reasons.values()) == {Reason.HELD_BACK}
    # Every whole-GPU job and both 470s (whose leftover the mix fills) are placed.
    assert {f"w{i}" for i in range(4)} | {"h0", "h1"} <= held.placed_jobs


def test_held_back_jobs_are_reported_not_dropped_and_the_fill_pass_leaves_them_out():
    problem = mixed_problem()
    answer = solve(problem, "cpsat", time_limit=5, admission_forecast=3.0)
    assert answer.placed_jobs | answer.unplaced_jobs == {j.name for j in problem.jobs}
    assert answer.stats["held_back"] == 4
    assert answer.stats["future_value"]["fresh_gpu"] == pytest.approx(950.0)
    assert all("forecast" in u.detail for u in answer.unplaced)


def test_admission_forecast_must_be_a_non_negative_number():
    with pytest.raises(ProblemError, match="admission_forecast"):
        solve(mixed_problem(), "cpsat", admission_forecast=-1)
    with pytest.raises(ProblemError, match="admission_forecast"):
        solve(mixed_problem(), "cpsat", admission_forecast="lots")


def test_the_heuristics_hold_back_the_same_shares():
    problem = mixed_problem()
    for rule in ("best-fit", "fgd-plus", "first-fit"):
        answer = solve(problem, rule, admission_forecast=3.0)
        assert {u.job: u.reason for u in answer.unplaced} == {f"s{i}": Reason.HELD_BACK for i in range(4)}
        assert answer.stats["held_back"] == 4


def test_the_placer_moves_a_share_to_the_gpu_where_it_takes_least_rather_than_refuse_it():
    from optalloc import Allocation, Placement
    from optalloc.core import FutureValue
    from optalloc.heuristics import Placer

    nodes = [Node(f"n{i}", cpu=64_000, memory=256_000, gpus=2) for i in range(3)]
    jobs = [Job("running", gpu_milli=500), Job("half", gpu_milli=500), Job("other", gpu_milli=600)]
    problem = Problem(nodes, jobs, current=Allocation([Placement("running", 0, "n0", (0,), 500)]))
    # A hand-made value function: a fresh GPU is worth 950 to the forecast, any other level nothing.
    values = np.zeros(101)
    values[0] = 950.0
    future = FutureValue(10, values, forecast_milli=10_000, whole_demand=10, fresh_gpus=5)
    plain = Placer(problem, "worst-fit").place(1)
    assert plain is not None and plain[0].node != "n0"  # worst-fit opens a fresh GPU
    placer = Placer(problem, "worst-fit", future=future)
    (half,) = placer.place(1)
    assert (half.node, half.gpus) == ("n0", (0,))  # 500 + 0 - 0 there, 500 + 0 - 950 on a fresh GPU
    assert placer.place(2) is None and placer.held  # 600 fits only fresh GPUs: held back


def test_the_answer_says_whether_admission_control_acted():
    problem = mixed_problem()
    assert solve(problem, "best-fit").stats.get("admission") is None
    inactive = solve(problem, "best-fit", admission_forecast=2.0)
    assert inactive.stats["admission"].startswith("inactive: the forecast asks for 7.8 whole GPUs")
    assert not any(u.reason == Reason.HELD_BACK for u in inactive.unplaced)
    assert solve(problem, "cpsat", admission_forecast=3.0).stats["admission"].startswith("active")
