"""Scenarios built from the public traces: Gavel runtimes per GPU type, the openb replay under load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from optalloc import Job, Node, Problem, ProblemError
from optalloc.io import gavel
from optalloc.sim import GROUPS, Scenario, gavel_scenario, horizon_for, openb_scenario, parse_counts, policies


def test_gavel_runtime_is_total_steps_over_the_throughput_of_the_gpu_type(traces: Path) -> None:
    folder = traces / "gavel"
    trace = folder / "msr" / "seed=0" / "0e4a51.trace"
    tp = gavel.read_throughputs(folder / "simulation_throughputs.json")
    sc = gavel_scenario(trace, tp, {"v100": 16, "p100": 16, "k80": 16})
    loaded = gavel.load_trace(trace)
    assert sc.models == ("v100", "p100", "k80") and len(sc.nodes) == 6
    for k, model in enumerate(sc.models):
        assert np.array_equal(sc.runtime[:, k], loaded.durations(tp, model))
    # the controller is told the V100 runtime; K80 is about 4x slower on median (not for every model)
    assert [j.duration for j in sc.jobs] == pytest.approx(sc.runtime[:, 0].tolist())
    finite = np.isfinite(sc.runtime[:, 2])
    assert np.median(sc.runtime[finite, 2] / sc.runtime[finite, 0]) > 3
    # jobs a K80 cannot run (throughput 0) may only go to the other types
    for i in np.flatnonzero(~finite):
        assert sc.jobs[i].gpu_models == frozenset({"v100", "p100"})
    assert (~finite).sum() == 25
    first = sc.jobs[0]
    assert first.gpus == loaded.records[0].scale_factor and first.arrival == loaded.records[0].arrival


def test_gavel_estimate_can_be_the_fastest_type_or_none(traces: Path) -> None:
    folder = traces / "gavel"
    trace = folder / "msr" / "seed=0" / "0e4a51.trace"
    tp = folder / "simulation_throughputs.json"
    fastest = gavel_scenario(trace, tp, {"k80": 8, "p100": 8}, estimate="min")
    assert [j.duration for j in fastest.jobs[:50]] == pytest.approx(np.min(fastest.runtime[:50], axis=1).tolist())
    blind = gavel_scenario(trace, tp, {"v100": 8}, estimate="none")
    assert all(j.duration is None for j in blind.jobs)
    with pytest.raises(ProblemError, match=r"^cluster: .a100. is not a worker type of simulation_throughputs.json"):
        gavel_scenario(trace, tp, {"a100": 8})


def test_openb_replay_divides_inter_arrivals_and_keeps_lifetimes(traces: Path) -> None:
    pods = traces / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
    plain = openb_scenario(pods, nodes=24, compress=1.0)
    loaded = openb_scenario(pods, nodes=24, compress=8.0)
    assert len(plain.jobs) == 8119 and len(plain.dropped) == 33  # pods created before the 34-day window
    assert len(plain.nodes) == 24 and sum(n.gpus for n in plain.nodes) == 122
    a, b = plain.problem.job_arrival, loaded.problem.job_arrival
    assert b == pytest.approx(a / 8.0, abs=1e-3)
    assert np.array_equal(plain.runtime, loaded.runtime)
    assert [j.duration for j in plain.jobs] == pytest.approx(plain.runtime[:, 0].tolist())
    assert loaded.offered_load() == pytest.approx(8 * plain.offered_load(), rel=1e-3)
    qos = openb_scenario(pods, nodes=24, qos_priority=True)
    assert {j.priority for j in qos.jobs} == {0, 1, 2}


def test_a_scenario_slice_keeps_arrival_order_and_runtimes() -> None:
    nodes = (Node("n", cpu=1000, memory=1000, gpus=1, gpu_model="A"),)
    jobs = tuple(Job(f"j{i}", gpus=1, arrival=float(10 - i), duration=float(i + 1)) for i in range(5))
    sc = Scenario.from_problem(Problem(nodes, jobs))
    part = sc.select(1, 2)  # second and third arrivals: j3 (t=7), j2 (t=8)
    assert sorted(j.name for j in part.jobs) == ["j2", "j3"]
    assert dict(zip([j.name for j in part.jobs], part.runtime[:, 0], strict=True)) == {"j2": 3.0, "j3": 4.0}
    assert [j.name for j in sc.head(1).jobs] == ["j4"]


def test_bad_scenarios_are_refused_with_the_field_named() -> None:
    nodes = (Node("n", cpu=1000, memory=1000, gpus=1, gpu_model="A"),)
    jobs = (Job("a", gpus=1, duration=1.0),)
    with pytest.raises(ProblemError, match="runtime"):
        Scenario("x", nodes, jobs, np.array([[1.0, 2.0]]), ("*",))
    with pytest.raises(ProblemError, match=r"runtime\[0\]"):
        Scenario("x", nodes, jobs, np.array([-1.0]))
    with pytest.raises(ProblemError, match="cluster"):
        parse_counts("v100:8")
    assert parse_counts(["v100=8,p100=4", "k80=2"]) == {"v100": 8, "p100": 4, "k80": 2}


def test_policy_groups_expand_without_duplicates() -> None:
    chosen = policies(["fcfs+best-fit", "heuristics", "exact"])
    names = [p.name for p in chosen]
    assert names[0] == "fcfs+best-fit" and len(names) == len(set(names)) == len(GROUPS["all"])
    heuristic = {p.name: p for p in chosen if p.kind == "heuristic"}
    assert all(not p.config.allow_migration and p.config.method == p.config.fallback for p in heuristic.values())
    exact = {p.name: p.config for p in chosen if p.kind == "exact"}
    assert exact["rolling-horizon"].allow_migration and exact["rolling-horizon"].horizon is None
    assert not exact["cpsat-packing"].allow_migration and exact["cpsat-packing"].drift.arrivals == 1
    assert exact["horizon-model"].horizon is not None
    packing_loop, loop = exact["rolling-horizon-packing"], exact["rolling-horizon-fcfs"]
    assert packing_loop.admit_exact and packing_loop.allow_migration and not loop.admit_exact
    assert dataclasses.replace(packing_loop, admit_exact=False) == loop  # the only difference
    variant = policies(["rolling-horizon+fgd"])[0]
    assert variant.config.fallback == "fgd" and variant.config.allow_migration and variant.kind == "exact"
    hz = horizon_for([100.0] * 9 + [5000.0])
    assert 600 <= hz.horizon <= 5000 and hz.growth > 1
