"""Partitioned (POP) solving of the time-share programs: every job in one part, answers feasible for the
whole, measured on the whole, close to the whole program's optimum, the same wherever the parts run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optalloc.core import ProblemError, Status
from optalloc.timeshare import ShareProblem, get_policy
from optalloc.timeshare.partitioned import Partitioned, partition

pytest.importorskip("cvxpy")

CONVEX = ("max-min-fairness", "finish-time-fairness", "max-sum-throughput", "min-makespan")


def mix(n: int, seed: int = 0, capacity=(24.0, 24.0, 24.0)) -> ShareProblem:
    """``n`` jobs of 1-8 GPUs on three types, each with its own speed-ups (Gavel-like: V100 >= P100 >= K80)."""
    rng = np.random.default_rng(seed)
    k80 = rng.uniform(0.2, 1.0, n)
    rates = np.stack([k80 * rng.uniform(1.5, 6.0, n), k80 * rng.uniform(1.0, 2.5, n), k80], axis=1)
    work = rng.uniform(1e3, 1e5, n)
    return ShareProblem.of(
        [f"job{i:04d}" for i in range(n)],
        ("v100", "p100", "k80"),
        rates,
        capacity,
        scale=rng.choice([1.0, 2.0, 4.0, 8.0], n, p=[0.4, 0.2, 0.3, 0.1]),
        weight=np.where(rng.random(n) < 0.8, 1.0, 2.0),
        work=work,
        remaining=work * rng.uniform(0.1, 1.0, n),
        elapsed=rng.uniform(0, 1e4, n),
    )


def feasible(problem: ShareProblem, X: np.ndarray) -> None:
    assert X.shape == (problem.n, len(problem.models))
    assert (X >= -1e-9).all()
    assert (X - problem.allowed <= 1e-9).all()
    assert (X.sum(axis=1) <= 1 + 1e-6).all()
    assert (problem.scale @ X <= problem.capacity * (1 + 1e-6) + 1e-6).all()


def test_every_job_is_in_exactly_one_part_and_parts_ask_the_same_gpus():
    problem = mix(200)
    groups = partition(problem, 8, seed=3)
    together = np.sort(np.concatenate(groups))
    assert np.array_equal(together, np.arange(problem.n))
    asked = [problem.scale[g].sum() for g in groups]
    assert max(asked) - min(asked) <= problem.scale.max()
    assert max(map(len, groups)) - min(map(len, groups)) <= 8  # a part of big gangs holds fewer jobs


def test_the_partition_depends_on_the_names_not_the_order_of_the_jobs():
    problem = mix(120)
    flipped = problem.subset(np.arange(problem.n)[::-1])
    named = [{problem.jobs[i] for i in g} for g in partition(problem, 4, seed=1)]
    named_flipped = [{flipped.jobs[i] for i in g} for g in partition(flipped, 4, seed=1)]
    assert sorted(map(sorted, named)) == sorted(map(sorted, named_flipped))
    other = [{problem.jobs[i] for i in g} for g in partition(problem, 4, seed=2)]
    assert sorted(map(sorted, other)) != sorted(map(sorted, named))


@pytest.mark.parametrize("name", [*CONVEX, "fifo", "srtf", "max-min-fairness-agnostic"])
def test_the_merged_answer_is_feasible_for_the_whole_and_measured_on_it(name):
    problem = mix(96, seed=1)
    with get_policy(name, parts=4, executor="serial") as pop:
        shares = pop.solve(problem)
    assert isinstance(pop, Partitioned) and shares.ok and shares.status is Status.FEASIBLE
    seen = shares.problem  # the pooled view for the agnostic variant
    feasible(seen, shares.X)
    assert shares.policy == name and shares.stats["parts"] == 4
    value = type(get_policy(name)).value(seen, shares.X)
    assert shares.objective == value  # the whole problem's objective, not a part's


@pytest.mark.parametrize("name", CONVEX)
def test_pop_is_close_to_the_whole_program_and_never_better(name):
    problem = mix(256, seed=2, capacity=(48.0, 48.0, 48.0))
    whole = get_policy(name).solve(problem)
    with get_policy(name, parts=4, executor="serial") as pop:
        parted = pop.solve(problem)
    sign = type(get_policy(name)).balance or 1  # +1: higher is better, -1: lower is better
    assert sign * (parted.objective - whole.objective) <= 1e-4 * abs(whole.objective)  # solver tolerance
    assert abs(parted.objective - whole.objective) <= 0.03 * abs(whole.objective)


def test_the_rebalancing_pass_closes_most_of_the_max_min_gap():
    problem = mix(256, seed=4, capacity=(48.0, 48.0, 48.0))
    whole = get_policy("max-min-fairness").solve(problem).objective
    with get_policy("max-min-fairness", parts=8, executor="serial", rebalance=False) as one:
        once = one.solve(problem).objective
    with get_policy("max-min-fairness", parts=8, executor="serial") as two:
        shares = two.solve(problem)
    assert shares.stats["passes"] == 2
    assert whole - shares.objective <= 0.5 * (whole - once) + 1e-6


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), parts=st.integers(1, 6), seed=st.integers(0, 1000), name=st.sampled_from(CONVEX))
def test_any_partitioned_answer_respects_every_constraint(n, parts, seed, name):
    problem = mix(n, seed=seed, capacity=(8.0, 4.0, 16.0))
    with get_policy(name, parts=parts, executor="serial") as pop:
        shares = pop.solve(problem)
    assert shares.ok
    feasible(problem, shares.X)


@pytest.mark.parametrize("name", CONVEX)
def test_a_policy_s_value_of_its_own_answer_is_its_objective(name):
    problem = mix(60, seed=5)
    shares = get_policy(name).solve(problem)
    value = type(get_policy(name)).value(problem, shares.X)
    assert value == pytest.approx(shares.objective, rel=1e-4)


def test_a_local_pool_gives_the_serial_answer_and_keeps_its_workers():
    problem = mix(128, seed=6)
    with get_policy("max-min-fairness", parts=4, executor="serial") as serial:
        expected = serial.solve(problem)
    with get_policy("max-min-fairness", parts=4, executor="local") as local:
        first = local.solve(problem)
        pool = local._pool
        again = local.solve(problem.subset(np.arange(problem.n)[::-1]))  # new inputs: solved again
        assert local._pool is pool  # the same workers (their programs are built)
    assert first.stats["executor"] == "local"
    np.testing.assert_allclose(first.X, expected.X, atol=1e-6)
    assert again.objective == pytest.approx(expected.objective, rel=1e-6)


def test_a_part_without_an_answer_is_served_by_fifo_and_said():
    problem = mix(40, seed=7)
    with get_policy("finish-time-fairness", parts=2, executor="serial", solver_options={"max_iter": 1}) as pop:
        shares = pop.solve(problem)
    assert shares.ok and shares.stats["fallback_parts"] == [0, 1]
    assert "FIFO stood in" in shares.solver_status
    feasible(problem, shares.X)


def test_partition_options_without_parts_and_bad_values_name_the_field():
    with pytest.raises(ProblemError, match="give parts"):
        get_policy("max-min-fairness", executor="local")
    with pytest.raises(ProblemError, match="parts"):
        get_policy("max-min-fairness", parts=0)
    with pytest.raises(ProblemError, match="executor"):
        get_policy("max-min-fairness", parts=2, executor="cloud")
    assert not isinstance(get_policy("max-min-fairness", parts=1), Partitioned)


@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_parts_as_ray_tasks_on_a_local_runtime_give_the_serial_answer(ray_local):
    problem = mix(64, seed=8)
    with get_policy("max-sum-throughput", parts=4, executor="serial") as serial:
        expected = serial.solve(problem)
    with get_policy("max-sum-throughput", parts=4) as pop:  # auto: Ray is running here
        shares = pop.solve(problem)
    assert shares.stats["executor"] == "ray"
    np.testing.assert_allclose(shares.X, expected.X, atol=1e-6)
