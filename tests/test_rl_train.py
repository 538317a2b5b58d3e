"""Training and deploying a learned scheduler: a tiny DQN run on a scenario where one action is clearly
right beats the random policy; the model file round-trips; a trained policy is a simulator policy and
the controller step's selector; PPO trains and runs in the job-choice mode. Every allocation the
simulator commits is verified (``SimConfig(verify=True)``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from optalloc import Job, Node, Problem, ProblemError, rl, sim, verify  # noqa: E402  # noqa: E402
from optalloc.adaptive import ControllerConfig, ControllerState, Event, step  # noqa: E402
from optalloc.rl import evaluate as rl_evaluate  # noqa: E402

ARMS = ["ljf+best-fit", "sjf+best-fit"]


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # the machine is shared; training sets it too, this covers the inference


def bursts(count: int = 120, seed: int = 0) -> sim.Scenario:
    """One 1-GPU node; jobs arrive in bursts of four, each burst two long (8 h) and two short (15 min)
    jobs in random order. Whenever the GPU frees up several jobs wait: shortest first (SJF) is clearly
    right for the completion times, longest first (LJF) clearly wrong."""
    rng = np.random.default_rng(seed)
    node = Node("gpu-node", cpu=16000, memory=65536, gpus=1, gpu_model="A")
    jobs = []
    for burst in range(count // 4):
        for k, hours in enumerate(rng.permutation([8.0, 8.0, 0.25, 0.25])):
            jobs.append(Job(f"b{burst:03d}-{k}", gpus=1, arrival=burst * 17.0 * 3600, duration=float(hours) * 3600))
    return sim.Scenario.from_problem(Problem((node,), tuple(jobs)), "bursts")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = bursts()
    env = rl.AllocationEnv(scenario, arms=ARMS, window=40, starts=[0, 40], sim=sim.SimConfig(tick=0))
    result = rl.train(
        env,
        algo="dqn",
        steps=800,
        seed=0,
        hyperparams={"learning_starts": 100, "target_update_interval": 100, "exploration_fraction": 0.5},
    )
    assert len(result.curve) >= 10 and all(e.reward < 0 for e in result.curve)
    path = rl.save(result, tmp_path_factory.mktemp("model") / "dqn.zip")
    files = rl.write_curve(result, path.with_suffix(""))
    assert [f.suffix for f in files] == [".png", ".csv"] and all(f.stat().st_size > 0 for f in files)
    return path


def test_a_short_dqn_run_learns_the_clearly_right_action_and_beats_random(trained: Path) -> None:
    held_out = bursts(seed=1).select(80, 40)  # a window of a workload it never saw
    config = sim.SimConfig(tick=0, verify=True)
    learned = sim.simulate(held_out, rl.policy(f"dqn:{trained}"), config)
    randoms = [sim.simulate(held_out, rl.random_policy(ARMS, seed=s), config) for s in range(3)]
    sjf = sim.simulate(held_out, sim.policy("sjf+best-fit"), config)
    assert learned.metrics.avg_jct < min(r.metrics.avg_jct for r in randoms)
    assert learned.metrics.avg_jct == pytest.approx(sjf.metrics.avg_jct)  # it picks SJF, as it should


def test_the_model_file_round_trips_and_keeps_the_settings_it_was_trained_with(trained: Path) -> None:
    policy = rl.load(trained)
    assert policy.algo == "dqn" and policy.mode == "algorithm" and policy.arm_names == tuple(ARMS)
    assert policy.features == rl.Features()
    with zipfile.ZipFile(trained) as archive:
        assert "optalloc.json" in archive.namelist()
    again = rl.load(trained)
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs = rng.random(policy.features.size).astype(np.float32)
        assert policy.act(obs) == again.act(obs)
        assert np.array_equal(policy.scores(obs), again.scores(obs))
        assert policy.act(obs, np.array([True, False])) == 0  # a mask is obeyed


def test_a_trained_policy_chooses_inside_the_controller_step(trained: Path) -> None:
    selector = rl.load(trained).selector()
    node = Node("gpu-node", cpu=16000, memory=65536, gpus=1, gpu_model="A")
    jobs = (Job("long", gpus=1, duration=8 * 3600.0), Job("short", gpus=1, duration=900.0))
    config = ControllerConfig.of(method="best-fit", fallback="best-fit", selector=selector)
    state = ControllerState.initial(Problem((node,), ()), config)
    state, plan = step(state, 0.0, events=[Event.arrival(j) for j in jobs])
    assert [a.job for a in plan.starts] == ["short"] and selector.decisions == 1
    assert selector.calls == 1 and 0 < selector.inference <= selector.seconds
    assert verify(state.problem(), state.allocation.replace(unplaced=plan.allocation.unplaced)) == []


def test_ppo_trains_and_runs_as_a_job_choice_policy(tmp_path: Path) -> None:
    scenario = bursts(count=40)
    env = rl.AllocationEnv(scenario, mode="job", window=40, sim=sim.SimConfig(tick=0))
    result = rl.train(env, algo="ppo", steps=128, seed=1, hyperparams={"n_steps": 64, "n_epochs": 2})
    path = rl.save(result, tmp_path / "ppo.zip")
    loaded = rl.load(path)
    assert loaded.algo == "ppo" and loaded.mode == "job" and loaded.features.candidates == 8
    run = sim.simulate(bursts(count=40, seed=2), rl.policy(f"ppo:{path}"), sim.SimConfig(tick=0, verify=True))
    assert run.metrics.completion_rate == 1.0
    assert run.policy == f"ppo:{path}"


def test_a_model_file_is_checked_before_it_is_used(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ProblemError, match="holds a dqn model"):
        rl.policy(f"ppo:{trained}")
    not_a_model = tmp_path / "x.zip"
    not_a_model.write_bytes(b"not a zip")
    with pytest.raises(ProblemError, match="not a model saved by optalloc"):
        rl.load(not_a_model)
    with pytest.raises(FileNotFoundError):
        rl.load(tmp_path / "missing.zip")
    with pytest.raises(ProblemError, match="learned policy"):
        sim.policy(f"dqn:{trained}")  # the simulator's registry points at optalloc.rl
    with pytest.raises(ProblemError, match="algo"):
        rl.train(rl.AllocationEnv(bursts(count=8)), algo="a2c", steps=10)


def _runs(outcomes: list[rl_evaluate.Outcome]) -> list[tuple]:
    """What a run simulated (not how long it took)."""
    return [
        (o.policy, o.start, o.seed, o.mean_jct, o.p95_jct, o.mean_wait, o.gpu_allocation, o.decisions) for o in outcomes
    ]


def test_an_evaluation_side_by_side_gives_the_serial_outcomes_in_the_serial_order(trained: Path) -> None:
    names = [f"dqn:{trained}", "sjf+best-fit", "random:ljf+best-fit,sjf+best-fit", "random-job"]
    kwargs = {"starts": [0, 40], "window": 40, "seeds": [0, 1], "config": sim.SimConfig(tick=0, verify=True)}
    serial = rl_evaluate.evaluate(bursts(seed=3), names, **kwargs)
    side_by_side = rl_evaluate.evaluate(bursts(seed=3), names, processes=2, **kwargs)
    assert len(serial) == 16 and _runs(side_by_side) == _runs(serial)
    assert [o.policy for o in serial[:4]] == names  # windows, then seeds, then policies
    with pytest.raises(ProblemError, match="processes"):
        rl_evaluate.evaluate(bursts(seed=3), names, processes=0, **kwargs)


def test_an_evaluation_reads_known_outcomes_instead_of_running_them(trained: Path) -> None:
    names = [f"dqn:{trained}", "ljf+best-fit"]
    kwargs = {"starts": [0], "window": 40, "seeds": [0, 1], "config": sim.SimConfig(tick=0)}
    stored: list[rl_evaluate.Outcome] = []
    first = rl_evaluate.evaluate(bursts(seed=4), names, on_run=stored.append, **kwargs)
    assert _runs(stored) == _runs(first)
    known = {(o.policy, o.start, o.seed): o for o in stored[:3]}
    again: list[rl_evaluate.Outcome] = []
    second = rl_evaluate.evaluate(bursts(seed=4), names, known=known, on_run=again.append, **kwargs)
    assert _runs(second) == _runs(first) and _runs(again) == _runs(first[3:])  # only the unknown one ran


def test_the_random_job_baseline_starts_random_jobs_among_those_that_fit() -> None:
    window = bursts(count=40, seed=5)
    config = sim.SimConfig(tick=0, verify=True)
    runs = [sim.simulate(window, rl.random_job_policy(seed=s), config) for s in range(3)]
    assert all(r.metrics.completion_rate == 1.0 for r in runs)
    assert len({round(r.metrics.avg_jct, 6) for r in runs}) > 1  # the seed decides
    again = sim.simulate(window, rl.random_job_policy(seed=0), config)
    assert again.metrics.avg_jct == runs[0].metrics.avg_jct
    with pytest.raises(ProblemError, match="rule"):
        rl.random_job_policy("nearest")
