"""Time-share policies in the simulator: every round verified, the books agree, heterogeneity pays."""

from __future__ import annotations

import numpy as np
import pytest

from optalloc import Job
from optalloc.core import ProblemError
from optalloc.io.gavel import gavel_cluster
from optalloc.sim import GROUPS, TIMESHARE, Scenario, SimConfig, compare, policies, policy, simulate

pytest.importorskip("cvxpy")

MODELS = ("v100", "k80")


def mixed(jobs: int = 24, seed: int = 0) -> Scenario:
    """Jobs of 1-8 GPUs arriving over a day on 8 V100 + 8 K80; half run 4x faster on V100, half the same."""
    rng = np.random.default_rng(seed)
    nodes = tuple(gavel_cluster({"v100": 8, "k80": 8}, gpus_per_node=4))
    specs, runtime = [], []
    for i in range(jobs):
        gpus = int(rng.choice([1, 2, 4]))
        v100 = float(rng.uniform(2, 8)) * 3600
        speedup = 4.0 if i % 2 else 1.2
        specs.append(
            Job(
                f"j{i:02d}",
                cpu=4000 * gpus,
                memory=16384 * gpus,
                gpus=gpus,
                arrival=float(rng.uniform(0, 86400)),
                duration=v100,
            )
        )
        runtime.append((v100, v100 * speedup))
    return Scenario("mixed", nodes, tuple(specs), np.array(runtime), MODELS, "test: mixed speedups")


@pytest.mark.parametrize("name", TIMESHARE)
def test_every_round_a_time_share_policy_commits_is_verified(name):
    sc = mixed(16)
    result = simulate(sc, policy(name, round_length=1800.0), SimConfig(tick=1800.0, verify=True))
    assert result.metrics.completion_rate == 1.0  # every job finished
    assert result.kind == "timeshare"
    assert result.counters.resolves > 0


def test_heterogeneity_aware_max_min_beats_the_agnostic_one_here():
    sc = mixed(24)
    chosen = policies(["max-min-fairness", "max-min-fairness-agnostic"], round_length=1800.0)
    aware, agnostic = compare(sc, chosen, SimConfig(tick=1800.0))
    assert aware.metrics.avg_jct < agnostic.metrics.avg_jct


def test_the_timeshare_group_names_every_variant():
    assert set(GROUPS["timeshare"]) == set(TIMESHARE)
    assert {p.timeshare.name for p in policies(["timeshare"])} == set(TIMESHARE)
    described = policy("max-min-fairness-agnostic").description
    assert "agnostic" in described and "360 s rounds" in described


def test_rounds_come_every_round_length_even_when_ticks_are_rarer():
    sc = mixed(6)
    result = simulate(sc, policy("max-min-fairness", round_length=600.0), SimConfig(tick=7200.0))
    span = result.metrics.makespan
    # the simulator ticks at least once per round for a time-share policy (idle stretches skipped)
    assert result.counters.ticks >= 0.5 * span / 600.0


def test_a_lost_node_preempts_its_jobs_and_every_step_stays_verified():
    from optalloc.sim import FailureModel

    sc = mixed(12)
    outages = ((sc.nodes[0].name, 3600.0, 7200.0), (sc.nodes[3].name, 20000.0, 3600.0))
    config = SimConfig(tick=1800.0, verify=True, failures=FailureModel(outages=outages))
    result = simulate(sc, policy("finish-time-fairness", round_length=1800.0), config)
    assert result.counters.failures == 2 and result.counters.repairs == 2
    assert result.metrics.completion_rate == 1.0


def test_time_share_and_packing_policies_compare_in_one_run():
    sc = mixed(10)
    results = compare(sc, policies(["fcfs+best-fit", "max-sum-throughput"], round_length=1800.0), SimConfig(tick=600.0))
    assert [r.kind for r in results] == ["heuristic", "timeshare"]
    assert all(r.metrics.completion_rate == 1.0 for r in results)


def test_a_bad_round_length_names_the_field():
    from optalloc.core import ProblemError

    with pytest.raises(ProblemError, match="round_length"):
        policy("max-min-fairness", round_length=0.0)


def test_the_command_line_runs_time_share_policies_next_to_the_others(traces, tmp_path):
    import json

    from typer.testing import CliRunner

    from optalloc.cli import app

    trace = traces / "gavel" / "msr" / "seed=0" / "0e4a51.trace"
    out = tmp_path / "ts"
    args = [
        "--trace",
        str(trace),
        "--cluster",
        "v100=4,p100=4,k80=4",
        "--jobs",
        "12",
        "--tick",
        "600",
        "--round",
        "600",
    ]
    policies_ = ["fcfs+best-fit", "max-min-fairness", "finish-time-fairness", "max-min-fairness-agnostic"]
    flags = [x for p in policies_ for x in ("--policy", p)]
    result = CliRunner().invoke(
        app, ["simulate", *args, *flags, "--out", str(out), "--quiet", "--no-plots", "--verify"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert [p["policy"] for p in data["policies"]] == policies_
    assert all(p["metrics"]["completion_rate"] == 1.0 for p in data["policies"])


def test_a_partitioned_policy_runs_in_the_simulator_and_says_so():
    sc = mixed(12)
    chosen = policy("max-min-fairness", round_length=1800.0, parts=2)
    assert "POP-2" in chosen.description
    result = simulate(sc, chosen, SimConfig(tick=1800.0, verify=True))
    assert result.metrics.completion_rate == 1.0
    with pytest.raises(ProblemError, match="parts"):
        policy("max-min-fairness", parts=0)
