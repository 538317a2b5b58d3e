"""The time-share policies: hand-solved instances, properties of every answer, DPP reuse, status as data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optalloc.core import MethodUnavailable, ProblemError, Status
from optalloc.timeshare import POOL, ShareProblem, get_policy, policy_names
from optalloc.timeshare.program import bucket

pytest.importorskip("cvxpy")

ALL = policy_names(agnostic=True)
TOL = 1e-4

# Two GPU types of one GPU each; job a runs 4x faster on "fast", job b 2x, job c the same on both.
FAST_SLOW = ("fast", "slow")


def two_jobs(b_rates=(2.0, 1.0), **kw) -> ShareProblem:
    return ShareProblem.of(["a", "b"], FAST_SLOW, [[4.0, 1.0], list(b_rates)], [1.0, 1.0], **kw)


def solve(name: str, problem: ShareProblem, **options):
    shares = get_policy(name, **options).solve(problem)
    assert shares.status is Status.OPTIMAL, shares.solver_status
    return shares


# Hand-solved instances ------------------------------------------------------------------------


def test_max_min_fairness_hand_solved():
    # b gets 1 at most (its rate is 1 everywhere, its time at most 1): equal share (0.5, 0.5) gives
    # eq_a = 2.5, eq_b = 1, so the maximin is 1. Stage 2 then gives a the whole fast GPU: a's gain
    # x_af + x_as / 4 is largest with x_bf = 0, so X = [[1, 0], [0, 1]] (unique).
    shares = solve("max-min-fairness", two_jobs((1.0, 1.0)))
    assert shares.objective == pytest.approx(1.0, abs=TOL)
    np.testing.assert_allclose(shares.X, [[1, 0], [0, 1]], atol=TOL)
    np.testing.assert_allclose(shares.effective, [4.0, 1.0], atol=TOL)


def test_max_min_fairness_weights_share_in_proportion():
    # One GPU, two equal jobs, weights 2 and 1: eq = 0.5 each; t <= x_a / (2 * 0.5), t <= x_b / 0.5,
    # x_a + x_b <= 1  ->  x_a = t, x_b = t / 2, t = 2/3.
    problem = ShareProblem.of(["a", "b"], ["v100"], [[1.0], [1.0]], [1.0], weight=[2.0, 1.0])
    shares = solve("max-min-fairness", problem)
    assert shares.objective == pytest.approx(2 / 3, abs=TOL)
    np.testing.assert_allclose(shares.X, [[2 / 3], [1 / 3]], atol=TOL)


def test_max_min_fairness_respects_gangs():
    # 4 GPUs; a gang of 4 and a job of 1: S = 5, equal part 0.8 each; 4 x_big + x_small <= 4 with both
    # >= 0.8 t gives t = 1 at (0.8, 0.8); stage 2 cannot give the small job more without the big one
    # dropping below 0.8.
    problem = ShareProblem.of(["big", "small"], ["v100"], [[1.0], [1.0]], [4.0], scale=[4, 1])
    shares = solve("max-min-fairness", problem)
    assert shares.objective == pytest.approx(1.0, abs=TOL)
    np.testing.assert_allclose(shares.X, [[0.8], [0.8]], atol=TOL)


def test_agnostic_variant_is_posed_on_one_pool():
    # Pooled: 2 GPUs, a and b at their mean rates (2.5, 1); equal part 1: both run all the time.
    shares = solve("max-min-fairness-agnostic", two_jobs((1.0, 1.0)))
    assert shares.problem.models == (POOL,)
    assert shares.policy == "max-min-fairness-agnostic"
    np.testing.assert_allclose(shares.X, [[1.0], [1.0]], atol=TOL)
    assert shares.problem.capacity.tolist() == [2.0]


def test_finish_time_fairness_hand_solved():
    # One GPU, two jobs of work 1 at rate 1: eq = 0.5, so rho_a = 1 / (2 x_a). Job b arrived 1 s
    # earlier: rho_b = (1 + 1 / x_b) / 2. Equal rhos with x_a + x_b = 1 give x_b^2 + x_b - 1 = 0:
    # x_b = (sqrt 5 - 1) / 2, rho = 1 / (2 (1 - x_b)).
    problem = ShareProblem.of(["a", "b"], ["v100"], [[1.0], [1.0]], [1.0], elapsed=[0.0, 1.0])
    shares = solve("finish-time-fairness", problem)
    xb = (math.sqrt(5) - 1) / 2
    np.testing.assert_allclose(shares.X, [[1 - xb], [xb]], atol=1e-3)
    assert shares.objective == pytest.approx(1 / (2 * (1 - xb)), rel=1e-3)


def test_finish_time_fairness_without_history_is_max_min():
    # elapsed 0, remaining = work: rho_j = eq_j / eff_j, the inverse of max-min's ratio.
    shares = solve("finish-time-fairness", two_jobs((1.0, 1.0)))
    assert shares.objective == pytest.approx(1.0, rel=1e-3)


def test_max_sum_throughput_hand_solved():
    # Gains per unit of X: a 1 (fast) and 1/4 (slow), b 1 and 1/2: slow goes to b, fast to a: 1.5.
    shares = solve("max-sum-throughput", two_jobs())
    assert shares.objective == pytest.approx(1.5, abs=TOL)
    np.testing.assert_allclose(shares.X, [[1, 0], [0, 1]], atol=TOL)
    # Weight 3 on b: b on fast is worth 3, on slow 1.5; a on slow 1/4: b takes fast (3.25 > 2.5).
    weighted = solve("max-sum-throughput", two_jobs(weight=[1.0, 3.0]))
    assert weighted.objective == pytest.approx(3.25, abs=TOL)
    np.testing.assert_allclose(weighted.X, [[0, 1], [1, 0]], atol=TOL)


def test_min_makespan_hand_solved():
    # Both jobs run all the time, a on fast for x: eff_a = 1 + 3x, eff_b = 2 - x; equal at x = 1/4:
    # both finish their work 1 after 1 / 1.75 s.
    shares = solve("min-makespan", two_jobs())
    assert shares.objective == pytest.approx(1 / 1.75, rel=1e-4)
    np.testing.assert_allclose(shares.X, [[0.25, 0.75], [0.75, 0.25]], atol=1e-4)


def test_fifo_and_srtf_hand_solved():
    problem = ShareProblem.of(
        ["a", "b", "c"], FAST_SLOW, [[4.0, 1.0], [2.0, 1.0], [1.0, 1.0]], [1.0, 1.0], remaining=[4.0, 1.0, 0.5]
    )
    # FIFO: a takes fast, b takes slow, c nothing.
    np.testing.assert_allclose(solve("fifo", problem).X, [[1, 0], [0, 1], [0, 0]])
    # SRTF: time left on the best type a 1, b 0.5, c 0.5 -> b (earlier), c, a: b fast, c slow.
    np.testing.assert_allclose(solve("srtf", problem).X, [[0, 0], [1, 0], [0, 1]])
    # Agnostic FIFO: a pool of 2 GPUs, a and b run.
    np.testing.assert_allclose(solve("fifo-agnostic", problem).X, [[1], [1], [0]])
    # A gang takes its fraction of what is left: 4 GPUs, a gang of 4 first, then nothing for b.
    gang = ShareProblem.of(["g", "b"], ["v100"], [[1.0], [1.0]], [4.0], scale=[4, 1])
    np.testing.assert_allclose(solve("fifo", gang).X, [[1], [0]])
    # Weights first: b (weight 2) goes before a.
    weighted = ShareProblem.of(["a", "b"], ["v100"], [[1.0], [1.0]], [1.0], weight=[1.0, 2.0])
    np.testing.assert_allclose(solve("fifo", weighted).X, [[0], [1]])


# Properties of every answer -------------------------------------------------------------------


@st.composite
def share_problems(draw, max_jobs: int = 6, max_types: int = 3) -> ShareProblem:
    n = draw(st.integers(1, max_jobs))
    k = draw(st.integers(1, max_types))
    rate = st.one_of(st.just(0.0), st.floats(0.1, 10.0))
    rates = [[draw(rate) for _ in range(k)] for _ in range(n)]
    capacity = [float(draw(st.integers(0, 8))) for _ in range(k)]
    scale = [draw(st.sampled_from([1, 1, 2, 4, 8])) for _ in range(n)]
    weight = [draw(st.sampled_from([0.5, 1.0, 1.0, 2.0])) for _ in range(n)]
    work = [draw(st.floats(0.5, 10.0)) for _ in range(n)]
    remaining = [w * draw(st.floats(0.05, 1.0)) for w in work]
    elapsed = [draw(st.floats(0.0, 100.0)) for _ in range(n)]
    return ShareProblem.of(
        [f"j{i}" for i in range(n)],
        [f"t{c}" for c in range(k)],
        rates,
        capacity,
        scale=scale,
        weight=weight,
        remaining=remaining,
        work=work,
        elapsed=elapsed,
    )


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=15)
@given(problem=share_problems())
def test_every_answer_is_a_valid_share(name, problem):
    shares = get_policy(name).solve(problem)
    assert shares.status.has_solution, shares.solver_status  # these small programs always solve
    X = shares.X
    seen = shares.problem
    assert X.shape == (seen.n, len(seen.models))
    assert (X >= 0).all()
    assert (X.sum(axis=1) <= 1 + 1e-9).all()  # shares sum to at most 1 per job
    assert (seen.scale @ X <= seen.capacity + 1e-9).all()  # no type over its GPUs
    assert (X[~(seen.allowed & seen.runnable[:, None])] == 0).all()  # nothing where a job cannot run


# DPP: programs built once -----------------------------------------------------------------------


def test_programs_are_built_once_per_bucket_and_reused():
    policy = get_policy("max-min-fairness")
    rng = np.random.default_rng(0)
    for n in (3, 5, 9, 16):  # one bucket (16)
        problem = ShareProblem.of(
            [f"j{i}" for i in range(n)],
            ("a", "b"),
            rng.uniform(0.5, 3, (n, 2)),
            [4.0, 4.0],
            scale=rng.integers(1, 3, n),
        )
        assert policy.solve(problem).ok
    assert policy.builds == 2  # the two stages, for bucket 16
    assert bucket(17) == 32 and bucket(1) == 16


# Status as data, misuse as exceptions ---------------------------------------------------------


def test_a_solver_stopped_early_is_a_status_not_clipped_values():
    problem = two_jobs()
    shares = get_policy("finish-time-fairness", solver_options={"max_iter": 1}).solve(problem)
    assert shares.status is Status.UNKNOWN
    assert shares.X is None and not shares.ok
    assert shares.solver_status  # the solver's own word is kept


def test_unknown_policy_lists_the_valid_ones():
    with pytest.raises(MethodUnavailable, match="max-min-fairness"):
        get_policy("max-min-fairnes")


def test_bad_input_names_the_field():
    with pytest.raises(ProblemError, match=r"throughput\[0, 1\]"):
        ShareProblem.of(["a"], ("x", "y"), [[1.0, -1.0]], [1.0, 1.0])
    with pytest.raises(ProblemError, match="weight"):
        ShareProblem.of(["a"], ("x",), [[1.0]], [1.0], weight=[0.0])
    with pytest.raises(ProblemError, match="work"):
        ShareProblem.of(["a"], ("x",), [[1.0]], [1.0], remaining=[2.0], work=[1.0])


def test_nothing_to_run_is_an_empty_answer():
    problem = ShareProblem.of(["a"], ("x",), [[0.0]], [1.0])
    shares = get_policy("max-min-fairness").solve(problem)
    assert shares.ok and shares.X.tolist() == [[0.0]]


def test_a_part_of_the_cluster_for_a_partitioned_solve():
    problem = ShareProblem.of(["a", "b", "c"], ("v100",), [[1.0], [1.0], [1.0]], [3.0])
    policy = get_policy("max-min-fairness")
    part = policy.solve_part(problem, [0, 2], [1.0])
    assert part.problem.jobs == ("a", "c")
    np.testing.assert_allclose(part.X, [[0.5], [0.5]], atol=TOL)
