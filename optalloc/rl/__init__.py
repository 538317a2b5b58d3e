"""Learned scheduling: a Gymnasium environment over the simulator, DQN and PPO agents
(stable-baselines3 on CPU PyTorch), and trained policies that run inside the controller step.

```python
from optalloc import rl, sim

env = rl.AllocationEnv(scenario, mode="algorithm", arms="compact", window=100)
trained = rl.train(env, algo="dqn", steps=20_000, seed=0)
rl.save(trained, "model.zip")
results = sim.compare(held_out, [sim.policy("fcfs+fgd"), rl.policy("dqn:model.zip")], sim.SimConfig(tick=600))
```

Modules: :mod:`~optalloc.rl.env` (``AllocationEnv``), :mod:`~optalloc.rl.features` (the observation),
:mod:`~optalloc.rl.arms` (the algorithm-choice actions), :mod:`~optalloc.rl.picker` (the job-choice
actions), :mod:`~optalloc.rl.reward`, :mod:`~optalloc.rl.train` (DQN/PPO, the model file, the learning
curve), :mod:`~optalloc.rl.policy` (trained policies as the controller's selectors and as simulator
policies).

Needs the ``rl`` extra (``pip install optalloc[rl]``: gymnasium, stable-baselines3, CPU torch).
Importing this package loads gymnasium; torch and stable-baselines3 load when a model is trained or
loaded. The environment is registered with Gymnasium as ``optalloc/Allocation-v0``
(``gymnasium.make("optalloc/Allocation-v0", scenario=...)``). See docs/rl.md.
"""

import gymnasium

from optalloc.rl.arms import ALL, COMPACT, EXACT, Arm, arm, arms
from optalloc.rl.env import DEFAULT_TICK, MODES, AllocationEnv, mean_runtime
from optalloc.rl.features import Features, observe
from optalloc.rl.picker import Picker
from optalloc.rl.policy import (
    LearnedPolicy,
    LearnedSelector,
    RandomPickSelector,
    RandomSelector,
    is_learned,
    load,
    policy,
    random_job_policy,
    random_policy,
)
from optalloc.rl.reward import Reward
from optalloc.rl.train import ALGOS, DEFAULTS, Episode, Progress, Trained, read_meta, save, train, write_curve

ENV_ID = "optalloc/Allocation-v0"
if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="optalloc.rl.env:AllocationEnv")

__all__ = [
    "ALGOS",
    "ALL",
    "COMPACT",
    "DEFAULTS",
    "DEFAULT_TICK",
    "ENV_ID",
    "EXACT",
    "MODES",
    "AllocationEnv",
    "Arm",
    "Episode",
    "Features",
    "LearnedPolicy",
    "LearnedSelector",
    "Picker",
    "Progress",
    "RandomPickSelector",
    "RandomSelector",
    "Reward",
    "Trained",
    "arm",
    "arms",
    "is_learned",
    "load",
    "mean_runtime",
    "observe",
    "policy",
    "random_job_policy",
    "random_policy",
    "read_meta",
    "save",
    "train",
    "write_curve",
]
