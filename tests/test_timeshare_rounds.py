"""The round mechanism and the scheduler: valid, verified rounds that follow the shares."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optalloc.core import Job, Node, ProblemError
from optalloc.io.gavel import gavel_cluster
from optalloc.timeshare import RoundConfig, TimeshareScheduler

pytest.importorskip("cvxpy")

POLICIES = (
    "max-min-fairness",
    "max-min-fairness-agnostic",
    "finish-time-fairness",
    "max-sum-throughput",
    "min-makespan",
    "fifo",
    "srtf-agnostic",
)


def job(name: str, gpus: int = 1, arrival: float = 0.0, **kw) -> Job:
    return Job(name, cpu=4000 * gpus, memory=16384 * gpus, gpus=gpus, arrival=arrival, **kw)


def check_round(result, nodes: dict[str, Node], rates: dict[str, dict[str, float]]) -> None:
    """Independently of verify: no node over its GPUs, CPU or memory, each GPU used once, every job on
    one GPU type it can run on."""
    used: Counter[tuple[str, int]] = Counter()
    cpu: Counter[str] = Counter()
    jobs = {j.name: j for j in result.problem.jobs}
    for p in result.allocation.placements:
        node = nodes[p.node]
        for g in p.gpus:
            assert 0 <= g < node.gpus
            used[(p.node, g)] += 1
        cpu[p.node] += jobs[p.job].cpu
    assert all(count == 1 for count in used.values())
    assert all(cpu[n] <= nodes[n].cpu for n in cpu)
    for name, ps in result.placements().items():
        models = {nodes[p.node].gpu_model for p in ps}
        assert len(models) == 1
        assert rates[name][models.pop()] > 0
        assert sum(len(p.gpus) for p in ps) == jobs[name].gpus * jobs[name].replicas  # the whole gang


@st.composite
def workloads(draw):
    n = draw(st.integers(1, 14))
    out = []
    for i in range(n):
        gpus = draw(st.sampled_from([1, 1, 2, 4, 8]))
        v100 = draw(st.floats(0.5, 4.0))
        rates = {
            "v100": v100,
            "p100": v100 / draw(st.floats(1.0, 2.0)),
            "k80": draw(st.sampled_from([0.0, v100 / 4, v100 / 2])),
        }
        out.append((job(f"j{i}", gpus, arrival=float(draw(st.integers(0, 2000)))), rates, draw(st.floats(100, 5000))))
    return out


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=8)
@given(workload=workloads(), sizes=st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(1, 12)))
def test_realised_rounds_never_exceed_capacity(policy, workload, sizes):
    nodes = gavel_cluster({"v100": sizes[0], "p100": sizes[1], "k80": sizes[2]}, gpus_per_node=4)
    by_name = {n.name: n for n in nodes}
    scheduler = TimeshareScheduler(policy, nodes, rounds=RoundConfig(length=300.0))
    rates = {}
    pending = sorted(workload, key=lambda w: w[0].arrival)
    done: set[str] = set()
    for r in range(12):
        now = 300.0 * r
        while pending and pending[0][0].arrival <= now:
            spec, rate, work = pending.pop(0)
            scheduler.arrive(spec, rate, now=now, work=work)
            rates[spec.name] = rate
        result = scheduler.step(now, full=True)  # raises SolverError if verify finds a violation
        check_round(result, by_name, rates)
        shares = result.shares
        if shares is not None and shares.X is not None:
            seen = shares.problem
            assert (shares.X.sum(axis=1) <= 1 + 1e-9).all()  # shares sum to at most 1 per job
            assert (seen.scale @ shares.X <= seen.capacity + 1e-9).all()
        # A job finishes now and then: an admission between rounds must stay valid too.
        if result.allocation.placements and r % 3 == 2:
            name = result.allocation.placements[0].job
            scheduler.complete(name)
            done.add(name)
            check_round(scheduler.step(now + 10.0, full=False), by_name, rates)
    assert not done & set(scheduler.running)


def test_rounds_follow_the_shares_over_time():
    # One GPU, weights 2 and 1: max-min gives 2/3 and 1/3; over 30 rounds a runs ~20, b ~10.
    nodes = [Node("v100-0", cpu=8000, memory=65536, gpus=1, gpu_model="v100")]
    scheduler = TimeshareScheduler("max-min-fairness", nodes)
    scheduler.arrive(job("a", priority=100), {"v100": 1.0}, now=0.0, work=1e9)
    scheduler.arrive(job("b"), {"v100": 1.0}, now=0.0, work=1e9)
    runs: Counter[str] = Counter()
    for r in range(30):
        result = scheduler.step(360.0 * r)
        runs.update(result.placements().keys())
    assert abs(runs["a"] - 20) <= 1 and abs(runs["b"] - 10) <= 1


def test_a_job_that_keeps_its_type_keeps_its_gpus():
    nodes = gavel_cluster({"v100": 8, "k80": 8})
    scheduler = TimeshareScheduler("max-min-fairness", nodes)
    scheduler.arrive(job("a", 8), {"v100": 4.0, "k80": 1.0}, now=0.0, work=1e9)
    scheduler.arrive(job("b", 8), {"v100": 1.0, "k80": 1.0}, now=0.0, work=1e9)
    first = scheduler.step(0.0)
    assert first.model == {"a": "v100", "b": "k80"}  # heterogeneity-aware: a where it is fast
    for r in range(1, 5):
        result = scheduler.step(360.0 * r)
        assert set(result.kept) == {"a", "b"} and not result.moved and not result.started


def test_between_rounds_nobody_is_preempted():
    nodes = gavel_cluster({"v100": 4})
    scheduler = TimeshareScheduler("max-min-fairness", nodes)
    for i in range(4):
        scheduler.arrive(job(f"j{i}"), {"v100": 1.0}, now=0.0, work=1e9)
    scheduler.step(0.0)
    scheduler.arrive(job("late", 2), {"v100": 1.0}, now=10.0, work=1e9)
    between = scheduler.step(10.0, full=False)
    assert not between.stopped and not between.moved and "late" not in between.started
    after = scheduler.step(360.0)  # the round boundary makes room for it over the next rounds
    runs = Counter(after.placements().keys())
    for r in range(2, 8):
        runs.update(scheduler.step(360.0 * r).placements().keys())
    assert runs["late"] >= 2


def test_a_lost_node_stops_its_jobs():
    nodes = gavel_cluster({"v100": 8}, gpus_per_node=4)
    scheduler = TimeshareScheduler("fifo", nodes)
    scheduler.arrive(job("a", 4), {"v100": 1.0}, now=0.0, work=1e9)
    first = scheduler.step(0.0)
    node = first.allocation.placements[0].node
    assert scheduler.node_lost(node) == ["a"]
    again = scheduler.step(5.0, full=False)
    assert again.allocation.placements[0].node != node


def test_misuse_raises():
    scheduler = TimeshareScheduler("fifo", gavel_cluster({"v100": 4}))
    scheduler.arrive(job("a"), {"v100": 1.0}, now=0.0)
    with pytest.raises(ProblemError, match="already"):
        scheduler.arrive(job("a"), {"v100": 1.0}, now=0.0)
    with pytest.raises(ProblemError, match="rate"):
        scheduler.arrive(job("b"), {"v100": -1.0}, now=0.0)
    with pytest.raises(ProblemError, match="length"):
        RoundConfig(length=0)


def test_estimated_remaining_work_advances_and_observations_replace_it():
    scheduler = TimeshareScheduler("srtf", gavel_cluster({"v100": 1}))
    scheduler.arrive(job("a"), {"v100": 2.0}, now=0.0, work=1000.0)
    scheduler.step(0.0)
    scheduler.step(100.0)
    assert scheduler.problem(100.0).remaining.tolist() == [800.0]
    scheduler.observe("a", remaining=500.0, model="v100", rate=1.0)
    problem = scheduler.problem(100.0)
    assert problem.remaining.tolist() == [500.0] and problem.throughput.tolist() == [[1.0]]
    assert np.isclose(problem.elapsed[0], 100.0)
