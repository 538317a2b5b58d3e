"""The reinforcement-learning environment: Gymnasium's and stable-baselines3's checkers, determinism for
a seed, masks, the reward's meaning, every committed allocation verified, both action modes, and the
openb and Gavel scenarios."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import gymnasium
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from optalloc import Job, Node, Problem, ProblemError, rl, sim
from optalloc.io import synthetic

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"


@pytest.fixture(scope="module")
def philly() -> sim.Scenario:
    """60 whole-GPU jobs of the Philly mix on two 8-GPU servers: queues form, choices matter."""
    problem = synthetic.philly_like(jobs=60, nodes=2, seed=3, mean_interarrival=9000)
    return sim.Scenario.from_problem(problem, "philly-small")


@pytest.fixture(scope="module")
def shared() -> sim.Scenario:
    """openb-like pods (shares, CPU-only, multi-GPU) on 3 nodes, arrivals every 2 minutes."""
    problem = synthetic.openb_like(nodes=3, jobs=48, seed=2)
    jobs = tuple(
        dataclasses.replace(j, arrival=120.0 * i, duration=3600.0 * (1 + i % 5)) for i, j in enumerate(problem.jobs)
    )
    return sim.Scenario.from_problem(Problem(problem.nodes, jobs), "openb-small")


def checked(scenario: sim.Scenario, tick: float = 0.0, **options: object) -> rl.AllocationEnv:
    """An environment whose simulator verifies every committed allocation and its own books
    (``tick=0``: steps at arrivals and completions only, the fast setting for tests)."""
    return rl.AllocationEnv(scenario, sim=sim.SimConfig(tick=tick, verify=True), **options)  # type: ignore[arg-type]


def run(env: rl.AllocationEnv, seed: int, policy: object = None) -> tuple[list[np.ndarray], list[float], dict]:
    """One episode; ``policy(obs, env) -> action`` (default: action 0)."""
    obs, info = env.reset(seed=seed)
    seen, rewards = [obs], []
    done = False
    while not done:
        action = 0 if policy is None else policy(obs, env)  # type: ignore[operator]
        obs, reward, terminated, truncated, info = env.step(action)
        seen.append(obs)
        rewards.append(reward)
        done = terminated or truncated
    return seen, rewards, info


@pytest.mark.parametrize("mode", rl.MODES)
def test_the_environment_passes_gymnasiums_and_stable_baselines_checkers(philly: sim.Scenario, mode: str) -> None:
    env = checked(philly, mode=mode, arms="compact", window=20)
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    assert env.observation_space.shape == (env.features.size,)
    assert len(env.features.names()) == env.features.size


def test_an_episode_replays_identically_for_a_seed_and_differs_for_another(philly: sim.Scenario) -> None:
    env = checked(philly, mode="algorithm", arms="all", window=20, starts=[0, 30], budget=0.1)

    def rotate(obs: np.ndarray, e: rl.AllocationEnv) -> int:
        return (e.decisions * 7) % int(e.action_space.n)  # every kind of arm, exact included

    a_obs, a_rew, a_info = run(env, 5, rotate)
    b_obs, b_rew, b_info = run(env, 5, rotate)
    assert len(a_obs) == len(b_obs) and all(np.array_equal(x, y) for x, y in zip(a_obs, b_obs, strict=True))
    assert a_rew == b_rew and a_info["jct"] == b_info["jct"]
    starts = set()
    for seed in range(8):
        env.reset(seed=seed)
        starts.add(env.start)
    assert starts == {0, 30}  # the seed draws the window


def test_the_return_is_minus_the_sum_of_completion_times_over_the_mean_runtime(philly: sim.Scenario) -> None:
    env = checked(philly, tick=1800.0, mode="algorithm", arms=["fcfs+best-fit", "sjf+fgd"], window=20)
    _, rewards, info = run(env, 0, lambda obs, e: e.decisions % 2)
    result = env.result()
    jobs = result.jobs
    assert np.isfinite(jobs.finish).all()  # the episode ran every job to its end
    total_jct = float((jobs.finish - jobs.arrival).sum())
    scale = rl.mean_runtime(env.episode_scenario(env.start))
    assert sum(rewards) == pytest.approx(-total_jct / scale, rel=1e-9)
    assert info["jct"] == pytest.approx(total_jct / len(jobs.names))


def test_the_job_mode_masks_all_but_the_jobs_that_fit_and_falls_back_on_a_masked_action(
    shared: sim.Scenario,
) -> None:
    env = checked(shared, mode="job", window=48, reward=rl.Reward(invalid=0.5))
    obs, info = env.reset(seed=0)
    steps = invalid = 0
    done = False
    while not done:
        mask = env.action_masks()
        assert np.array_equal(mask, info["action_mask"])
        picker = env._picker
        assert picker is not None and mask.sum() == len(picker.candidates) >= 2  # a lone candidate is not asked
        names = list(picker.candidates)
        for k, name in enumerate(names):  # each candidate fits now, and its features say so
            assert obs[env.features.names().index(f"candidate{k}.fits")] == 1.0
            assert picker.placer.fits(picker.index[name]).any() or picker.problem.jobs[picker.index[name]].replicas > 1
        action = int(env.action_space.n) - 1 if steps % 3 == 0 else 0  # sometimes a masked one
        masked = not mask[action]
        obs, _reward, terminated, truncated, info = env.step(action)
        if masked:
            invalid += 1
            assert info["invalid"] and info["job"] == names[0]
        else:
            assert "invalid" not in info and info["job"] == names[action]
        steps += 1
        done = terminated or truncated
    assert steps > 3 and invalid >= 1
    assert np.isfinite(env.result().jobs.finish).all()


def test_every_arm_commits_verified_allocations_on_jobs_that_share_gpus(shared: sim.Scenario) -> None:
    env = checked(shared, mode="algorithm", arms="all", window=48, budget=0.05)
    _, _, _info = run(env, 1, lambda obs, e: e.decisions % int(e.action_space.n))
    assert env.decisions >= 10
    assert np.isfinite(env.result().jobs.finish).all()


def test_the_environment_is_registered_with_gymnasium(philly: sim.Scenario) -> None:
    env = gymnasium.make(rl.ENV_ID, scenario=philly, window=20, arms="compact")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()


def test_a_window_without_choices_is_an_episode_of_one_step() -> None:
    nodes = (Node("n0", cpu=8000, memory=8000, gpus=4, gpu_model="A"),)
    jobs = tuple(Job(f"j{i}", gpus=1, arrival=100.0 * i, duration=50.0) for i in range(3))
    env = rl.AllocationEnv(sim.Scenario.from_problem(Problem(nodes, jobs)), mode="job", window=None)
    env.reset(seed=0)
    _obs, reward, terminated, _truncated, info = env.step(0)
    assert terminated and info["no_choice"] and reward == pytest.approx(-150.0 / 50.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"mode": "both"}, "mode"),
        ({"arms": ["fcfs+no-such-rule"]}, "arms"),
        ({"arms": ["rolling-horizon+fgd"]}, "arms"),
        ({"arms": []}, "arms"),
        ({"rule": "tetris"}, "rule"),
        ({"window": 0}, "window"),
        ({"starts": [10_000]}, "starts"),
        ({"reward": "jct"}, None),
    ],
)
def test_bad_settings_are_problem_errors_naming_the_field(
    philly: sim.Scenario, options: dict, field: str | None
) -> None:
    if field is None:
        with pytest.raises(ProblemError, match="reward"):
            rl.Reward.named("latency")
        return
    with pytest.raises(ProblemError, match=field):
        rl.AllocationEnv(philly, **options)


def test_a_reward_that_weighs_nothing_or_negatively_is_refused() -> None:
    with pytest.raises(ProblemError, match="weighs nothing"):
        rl.Reward(jct=0.0)
    with pytest.raises(ProblemError, match="negative"):
        rl.Reward(wait=-1.0)
    assert rl.Reward.named("alloc").target == "GPU allocation"


@pytest.mark.traces
@pytest.mark.parametrize("family", ["gavel", "openb"])
def test_the_environment_runs_on_the_real_traces(family: str) -> None:
    if not TRACES.exists():
        pytest.skip("the public traces are not next to the repository")
    if family == "gavel":
        gavel = TRACES / "gavel"
        scenario = sim.gavel_scenario(
            gavel / "msr" / "seed=0" / "0e4a51.trace",
            gavel / "simulation_throughputs.json",
            {"v100": 8, "p100": 8, "k80": 8},
        )
    else:
        scenario = sim.openb_scenario(TRACES / "alibaba-gpu-v2023" / "openb_pod_list_default.csv", nodes=8, compress=8)
    for mode in rl.MODES:
        env = checked(scenario, tick=3600.0, mode=mode, arms="compact", window=20, starts=[300], budget=0.05)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        _, rewards, _ = run(env, 0, lambda o, e: e.decisions % 3)
        assert all(r <= 0 for r in rewards)
