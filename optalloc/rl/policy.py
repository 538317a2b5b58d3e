"""Trained policies as the controller's selectors, and as simulator policies.

:func:`load` reads a model saved by :func:`optalloc.rl.save` (``optalloc rl train``) and gives a
:class:`LearnedPolicy`: ``act(observation, mask)`` is the greedy action (the largest Q-value for DQN,
the most probable action for PPO) among the valid ones. :meth:`LearnedPolicy.selector` wraps it as a
:class:`~optalloc.adaptive.controller.config.Selector`: set as ``ControllerConfig.selector``, the
production step asks it at every step that has something to decide, and it answers with

- the algorithm-choice mode: the configuration of the arm it picks (a queue ordering x placement rule,
  or the exact re-solve) for that step;
- the job-choice mode: an allocation -- it picks waiting jobs one by one among those that fit, with the
  same :class:`~optalloc.rl.picker.Picker` as in training -- which the controller verifies and commits.

The observation is built from the controller's state by the same function as in training
(:func:`optalloc.rl.features.observe`), so the policy runs wherever the step runs: in the simulator, in
``optalloc watch`` with real monitoring, in a service. :func:`policy` makes ``dqn:model.zip`` or
``ppo:model.zip`` a :class:`~optalloc.sim.Policy`, :func:`random_policy` the random-action
baseline of the same arms, and :func:`random_job_policy` that of the job-choice mode.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from optalloc.adaptive import ControllerConfig, ControllerState
from optalloc.core import Allocation, ProblemError
from optalloc.rl.arms import Arm, arms, base_config
from optalloc.rl.features import Features, observe
from optalloc.rl.picker import Picker
from optalloc.rl.train import ALGOS, read_meta
from optalloc.sim import Policy

PREFIXES = tuple(f"{a}:" for a in ALGOS)


@dataclass(frozen=True, eq=False)
class LearnedPolicy:
    """A trained model and the settings it observes and acts with (``meta``: its ``optalloc.json``)."""

    model: Any
    algo: str
    meta: dict[str, Any]
    path: Path

    @property
    def mode(self) -> str:
        return str(self.meta["env"]["mode"])

    @property
    def features(self) -> Features:
        return Features(**self.meta["env"]["features"])

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(self.meta["env"]["arms"])

    @property
    def rule(self) -> str:
        return str(self.meta["env"]["rule"])

    def scores(self, obs: np.ndarray) -> np.ndarray:
        """float (actions,): the Q-values (DQN) or action logits (PPO) of one observation."""
        import torch

        tensor, _ = self.model.policy.obs_to_tensor(np.asarray(obs, dtype=np.float32))
        with torch.no_grad():
            if self.algo == "dqn":
                out = self.model.q_net(tensor)
            else:
                out = self.model.policy.get_distribution(tensor).distribution.logits
        return np.asarray(out.cpu().numpy()[0], dtype=np.float64)

    def act(self, obs: np.ndarray, mask: np.ndarray | None = None) -> int:
        """The greedy action for ``obs`` among those ``mask`` allows (default: all)."""
        values = self.scores(obs)
        if mask is not None:
            values = np.where(np.asarray(mask, dtype=bool), values, -np.inf)
        return int(np.argmax(values))

    def selector(self, *, budget: float | None = None, seed: int = 0) -> LearnedSelector:
        """This policy as the controller's selector (``budget``: seconds of the exact arm; default as trained)."""
        b = float(self.meta["env"].get("budget", 0.5)) if budget is None else budget
        return LearnedSelector(
            self, arms(list(self.arm_names), budget=b, seed=seed) if self.mode == "algorithm" else ()
        )


class LearnedSelector:
    """A :class:`LearnedPolicy` choosing how the controller acts (module docstring).

    ``decisions`` counts the choices made (arms, or jobs picked), ``inference`` the time they took
    (observation and network), ``calls`` the controller steps that asked and ``seconds`` all the time
    spent in them (in the job mode also finding the candidates and placing the jobs picked)."""

    def __init__(self, learned: LearnedPolicy, arms: Sequence[Arm] = ()) -> None:
        self.learned = learned
        self.arms = tuple(arms)
        self.features = learned.features
        self.decisions = 0
        self.calls = 0
        self.seconds = 0.0
        self.inference = 0.0

    def choose(self, state: ControllerState, now: float) -> ControllerConfig | Allocation | None:
        started = time.perf_counter()
        self.calls += 1
        try:
            if self.learned.mode == "algorithm":
                self.decisions += 1
                obs = observe(state, now, self.features)
                chosen = self.arms[self.learned.act(obs)].config
                self.inference += time.perf_counter() - started
                return chosen
            picker = Picker(state, self.learned.rule, self.features.candidates)
            picker.settle()
            n = self.features.candidates
            while picker.candidates:
                self.decisions += 1
                before = time.perf_counter()
                mask = np.arange(n) < len(picker.candidates)
                k = self.learned.act(np.asarray(picker.observe(now, self.features)), mask)
                self.inference += time.perf_counter() - before
                picker.pick(k)
                picker.settle()
            return picker.proposal()
        finally:
            self.seconds += time.perf_counter() - started


class RandomSelector:
    """The random-action baseline: a uniformly random arm at every decision (seeded)."""

    def __init__(self, arms: Sequence[Arm], seed: int = 0) -> None:
        self.arms = tuple(arms)
        self.rng = np.random.default_rng(seed)

    def choose(self, state: ControllerState, now: float) -> ControllerConfig:
        return self.arms[int(self.rng.integers(len(self.arms)))].config


class RandomPickSelector:
    """The job-choice mode's random baseline: at every step, uniformly random jobs among the first
    ``slots`` waiting jobs that fit (the job-choice agent's actions), placed by ``rule``, until none
    fits (seeded)."""

    def __init__(self, rule: str = "best-fit", slots: int = 8, seed: int = 0) -> None:
        self.rule = rule
        self.slots = slots
        self.rng = np.random.default_rng(seed)

    def choose(self, state: ControllerState, now: float) -> Allocation:
        picker = Picker(state, self.rule, self.slots)
        picker.settle()
        while picker.candidates:
            picker.pick(int(self.rng.integers(len(picker.candidates))))
            picker.settle()
        return picker.proposal()


def load(path: str | Path) -> LearnedPolicy:
    """The policy saved at ``path`` (a ``.zip`` written by :func:`optalloc.rl.save`)."""
    meta = read_meta(path)
    algo = meta["algo"]
    from stable_baselines3 import DQN, PPO

    cls = DQN if algo == "dqn" else PPO
    model = cls.load(str(path), device="cpu")
    return LearnedPolicy(model, algo, meta, Path(path))


def policy(name: str, *, budget: float | None = None, seed: int = 0) -> Policy:
    """The simulator policy ``dqn:PATH`` or ``ppo:PATH``: the base configuration (FCFS + best-fit)
    with the trained policy as its selector. The prefix must name the file's algorithm."""
    algo, sep, path = name.partition(":")
    if not sep or algo not in ALGOS or not path:
        raise ProblemError(
            "policy", name, f"is not a learned policy ({' or '.join(p + 'MODEL.zip' for p in PREFIXES)})"
        )
    learned = load(path)
    if learned.algo != algo:
        raise ProblemError("policy", name, f"names {algo} but {path} holds a {learned.algo} model")
    what = (
        f"{learned.mode} choice among {len(learned.arm_names)} arms"
        if learned.mode == "algorithm"
        else f"job choice among {learned.features.candidates} candidates, {learned.rule} placement"
    )
    config = replace(base_config(seed), selector=learned.selector(budget=budget, seed=seed))
    return Policy(name, config, f"learned {algo.upper()} policy ({what})", "learned")


def random_policy(names: Sequence[str] | str = "all", *, budget: float = 0.5, seed: int = 0) -> Policy:
    """The random-action baseline over the arms ``names`` (a uniformly random arm at every decision)."""
    chosen = arms(names, budget=budget, seed=seed)
    config = replace(base_config(seed), selector=RandomSelector(chosen, seed))
    return Policy("random", config, f"a random arm of {len(chosen)} at every decision", "learned")


def random_job_policy(rule: str = "best-fit", *, slots: int = 8, seed: int = 0) -> Policy:
    """The random-action baseline of the job-choice mode (:class:`RandomPickSelector`)."""
    from optalloc import heuristics

    if rule not in heuristics.RULES:
        raise ProblemError("rule", rule, f"is not a placement rule (known: {', '.join(heuristics.RULES)})")
    if not (isinstance(slots, int) and slots >= 1):
        raise ProblemError("slots", slots, "is not a positive number of candidates")
    config = replace(base_config(seed), selector=RandomPickSelector(rule, slots, seed))
    return Policy("random-job", config, f"a random job of the first {slots} that fit, {rule} placement", "learned")


def is_learned(name: str) -> bool:
    """Whether ``name`` names a learned policy (``dqn:...`` or ``ppo:...``)."""
    return isinstance(name, str) and name.startswith(PREFIXES)
