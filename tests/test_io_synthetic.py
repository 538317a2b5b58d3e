"""Synthetic workloads: same seed same problem, the published mixes, and the FGD inflation's invariants."""

from collections import Counter

import numpy as np
import pytest

from optalloc import Job, ProblemError
from optalloc.io import problem_to_dict, synthetic


def test_same_seed_gives_the_identical_problem_and_another_seed_does_not():
    a, b = synthetic.openb_like(nodes=32, jobs=300, seed=7), synthetic.openb_like(nodes=32, jobs=300, seed=7)
    assert problem_to_dict(a) == problem_to_dict(b)
    assert problem_to_dict(a) != problem_to_dict(synthetic.openb_like(nodes=32, jobs=300, seed=8))
    assert problem_to_dict(synthetic.philly_like(jobs=50, seed=1)) == problem_to_dict(
        synthetic.philly_like(jobs=50, seed=1)
    )
    assert problem_to_dict(synthetic.demo_problem()) == problem_to_dict(synthetic.demo_problem(0))


def test_openb_pod_mix_matches_the_default_trace_at_20k_jobs():
    problem = synthetic.openb_like(nodes=1213, jobs=20_000, seed=3)
    jobs = problem.jobs
    n = len(jobs)
    assert n == 20_000
    assert sum(j.gpu_demand == 0 for j in jobs) / n == pytest.approx(1088 / 8152, abs=0.01)
    single = [j for j in jobs if j.gpus == 1 or j.gpu_milli]
    assert sum(j.gpu_milli > 0 for j in single) / len(single) == pytest.approx(3078 / 6989, abs=0.015)
    multi = Counter(j.gpus for j in jobs if j.gpus > 1)
    assert sum(multi.values()) / n == pytest.approx(75 / 8152, abs=0.003)
    assert set(multi) <= {2, 4, 8} and multi[8] > multi[2]
    shares = Counter(j.gpu_milli for j in jobs if j.gpu_milli)
    assert set(shares) <= {m for m, _ in synthetic.SHARE_MILLI}
    assert shares[810] / sum(shares.values()) == pytest.approx(1078 / 3078, abs=0.02)
    assert np.mean([j.gpu_demand for j in jobs]) == pytest.approx(6086.8 / 8152 * 1000, rel=0.05)


def test_openb_lifetimes_follow_the_published_median_and_p90():
    durations = synthetic.openb_like(nodes=16, jobs=20_000, seed=5).job_duration
    assert np.median(durations) == pytest.approx(540, rel=0.08)
    assert np.percentile(durations, 90) == pytest.approx(6574, rel=0.12)
    assert durations.max() <= 12_537_496


def test_openb_node_shapes_are_stratified_in_the_trace_proportions():
    nodes = synthetic.openb_like(nodes=1213, jobs=0).nodes
    shapes = Counter((n.gpu_model, n.gpus, n.cpu, n.memory) for n in nodes)
    expected = {(m, g, c, mem): k for m, g, c, mem, k in synthetic.NODE_SHAPES if g}
    assert shapes == expected
    assert sum(n.gpus for n in nodes) == 6212
    small = synthetic.openb_like(nodes=100, jobs=0).nodes
    assert len(small) == 100 and Counter(n.gpu_model for n in small).most_common(1)[0] == ("G2", 45)
    with_cpu = synthetic.openb_like(nodes=1523, jobs=0, cpu_only_nodes=True).nodes
    assert sum(not n.gpus for n in with_cpu) == 310


def test_load_generates_pods_until_the_gpu_request_reaches_it():
    problem = synthetic.openb_like(nodes=64, load=1.2, seed=2)
    capacity = int(problem.capacity[:, 2].sum())
    requested = int(problem.demand[:, 2].sum())
    assert requested >= 1.2 * capacity
    assert requested - int(problem.demand[-1, 2]) < 1.2 * capacity


def test_arrivals_are_sorted_and_start_at_zero():
    arrivals = synthetic.openb_like(nodes=16, jobs=500, seed=1).job_arrival
    assert arrivals[0] == 0 and np.all(np.diff(arrivals) >= 0)


def test_philly_gpu_mix_and_poisson_arrivals():
    problem = synthetic.philly_like(jobs=20_000, seed=4)
    counts = Counter(j.gpus for j in problem.jobs)
    for gpus, k in synthetic.PHILLY_GPU_MIX:
        assert counts[gpus] / 20_000 == pytest.approx(k / 1181, abs=0.015)
    gaps = np.diff(problem.job_arrival)
    assert gaps.mean() == pytest.approx(synthetic.PHILLY_INTERARRIVAL, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential gaps
    assert len(problem.nodes) == 64 and all(n.gpus == 8 for n in problem.nodes)
    gang = synthetic.philly_like(jobs=100, seed=4, gang=True)
    assert [j.replicas for j in gang.jobs] == [j.gpus for j in synthetic.philly_like(jobs=100, seed=4).jobs]


def test_demo_problem_is_small_mixed_and_every_job_fits_some_node():
    problem = synthetic.demo_problem()
    assert 64 <= len(problem.nodes) <= 128 and 200 <= len(problem.jobs) <= 600
    kinds = Counter(
        "cpu" if not j.gpu_demand else "share" if j.gpu_milli else "multi" if j.gpus > 1 else "one"
        for j in problem.jobs
    )
    assert set(kinds) == {"cpu", "share", "one", "multi"}
    assert all(problem.hostable(j) for j in range(len(problem.jobs)))


def test_bad_arguments_are_problem_errors():
    with pytest.raises(ProblemError, match=r"load: 1\.0 is given with jobs"):
        synthetic.openb_like(jobs=10, load=1.0)
    with pytest.raises(ProblemError, match=r"cpu_only: 1\.5 is not a fraction"):
        synthetic.openb_like(jobs=10, cpu_only=1.5)
    with pytest.raises(ProblemError, match=r"jobs: -1 is not a count"):
        synthetic.philly_like(jobs=-1)


# FGD inflation ----------------------------------------------------------------------------------
def _pods() -> list[Job]:
    return [Job("a", gpus=2), Job("b", gpu_milli=500), Job("c", cpu=1000), Job("d", gpus=1, replicas=2)]


def test_inflate_keeps_every_job_first_and_stays_within_the_target():
    jobs = _pods()
    capacity = 20_000
    out = synthetic.inflate(jobs, capacity_gpu_milli=capacity, target=1.3, seed=42)
    assert out[: len(jobs)] == jobs
    total = sum(j.gpu_demand * j.replicas for j in out)
    assert total <= 1.3 * capacity
    assert total > 1.3 * capacity - 2000  # stopped at the first job that would not fit (max demand 2000)
    assert len({j.name for j in out}) == len(out)


def test_inflate_copies_are_named_with_a_counter_and_keep_the_demand():
    out = synthetic.inflate(_pods(), capacity_gpu_milli=20_000, seed=1)
    originals = {j.name: j for j in _pods()}
    for job in out[4:]:
        base, _, k = job.name.partition("#")
        assert int(k) >= 2
        assert job.demand_key == originals[base].demand_key
    by_base = Counter(j.name.partition("#")[0] for j in out[4:])
    for base, count in by_base.items():
        assert {j.name for j in out if j.name.startswith(base + "#")} == {f"{base}#{k}" for k in range(2, count + 2)}


def test_inflate_is_deterministic_per_seed_and_noop_when_already_above_target():
    a = synthetic.inflate(_pods(), capacity_gpu_milli=50_000, seed=3)
    assert a == synthetic.inflate(_pods(), capacity_gpu_milli=50_000, seed=3)
    assert [j.name for j in a] != [j.name for j in synthetic.inflate(_pods(), capacity_gpu_milli=50_000, seed=4)]
    assert synthetic.inflate(_pods(), capacity_gpu_milli=1000, seed=3) == _pods()


def test_shuffled_is_a_seeded_permutation():
    jobs = synthetic.inflate(_pods(), capacity_gpu_milli=30_000, seed=0)
    a, b = synthetic.shuffled(jobs, 42), synthetic.shuffled(jobs, 42)
    assert a == b and sorted(j.name for j in a) == sorted(j.name for j in jobs)
    assert a != synthetic.shuffled(jobs, 43)
