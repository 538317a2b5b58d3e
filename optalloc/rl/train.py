"""Training: DQN (experience replay, epsilon-greedy schedule, target network) or PPO, with
stable-baselines3 on CPU PyTorch, and the file a trained policy lives in.

:func:`train` runs ``steps`` environment steps (decisions) of ``algo`` on an
:class:`~optalloc.rl.env.AllocationEnv`, seeded (the agent, its network's initial weights and the
episodes' draws all follow ``seed``), without TensorBoard, with PyTorch on ``threads`` CPU threads
(default 1: a laptop, or a machine shared with other work). It records the learning curve (every
episode's return, length, and mean JCT and queueing delay of its jobs). :func:`save` writes the model
as stable-baselines3's zip with the environment's settings inside (``optalloc.json``), so the file is
all a user keeps: :func:`optalloc.rl.load` gives back a policy that observes and acts as it was trained.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optalloc.core import ProblemError
from optalloc.rl.env import AllocationEnv

ALGOS = ("dqn", "ppo")
META = "optalloc.json"
FORMAT = 1

#: Hyperparameters for small budgets (thousands to tens of thousands of decisions); any of them can be
#: overridden with ``hyperparams=``. DQN: replay buffer, epsilon from 1 to 0.05 over the first 30% of
#: the steps, target network synchronised every 1,000 steps. Both: two hidden layers of 64.
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "dqn": {
        "learning_rate": 5e-4,
        "buffer_size": 50_000,
        "learning_starts": 1_000,
        "batch_size": 64,
        "gamma": 0.99,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 1_000,
        "exploration_fraction": 0.3,
        "exploration_initial_eps": 1.0,
        "exploration_final_eps": 0.05,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
    "ppo": {
        "learning_rate": 3e-4,
        "n_steps": 1_024,
        "batch_size": 64,
        "n_epochs": 5,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "ent_coef": 0.01,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
}


@dataclass(frozen=True)
class Episode:
    """One training episode: when it ended (``timesteps``), its ``reward`` (return), ``length``
    (decisions), the mean JCT and queueing delay of its jobs (seconds; NaN when none finished), and the
    mean JCT of the environment's ``baseline`` policy on the same window (NaN without one)."""

    timesteps: int
    reward: float
    length: int
    jct: float
    wait: float
    baseline_jct: float = math.nan


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps, ``episodes`` finished, the last episode's return (NaN before one)."""

    done: int
    total: int
    episodes: int
    last_reward: float


@dataclass(frozen=True, eq=False)
class Trained:
    """A trained model: ``model`` (stable-baselines3), ``algo``, the ``env`` settings it learned on,
    the learning ``curve``, ``steps``, ``seed`` and the wall time (s)."""

    model: Any
    algo: str
    env: AllocationEnv
    curve: tuple[Episode, ...]
    steps: int
    seed: int
    seconds: float
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    trained_on: Mapping[str, Any] = field(default_factory=dict)


def check_algo(algo: str) -> str:
    if algo not in ALGOS:
        raise ProblemError("algo", algo, f"is not one of {', '.join(ALGOS)}")
    return algo


def train(
    env: AllocationEnv,
    *,
    algo: str = "dqn",
    steps: int = 20_000,
    seed: int = 0,
    hyperparams: Mapping[str, Any] | None = None,
    threads: int = 1,
    progress: Callable[[Progress], None] | None = None,
    trained_on: Mapping[str, Any] | None = None,
) -> Trained:
    """Train ``algo`` (``dqn`` or ``ppo``) for ``steps`` decisions on ``env`` (module docstring).

    ``hyperparams`` override :data:`DEFAULTS`; ``progress`` is called every ~0.2 s and at the end;
    ``trained_on``: a description of the training data, kept in the saved file.
    """
    check_algo(algo)
    if not (isinstance(steps, int) and steps >= 1):
        raise ProblemError("steps", steps, "is not a positive number of steps")
    if not (isinstance(threads, int) and threads >= 1):
        raise ProblemError("threads", threads, "is not a positive number of threads")
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback

    params = {**DEFAULTS[algo], **dict(hyperparams or {})}
    if algo == "dqn":
        params["learning_starts"] = min(int(params["learning_starts"]), max(1, steps // 10))
    else:
        params["n_steps"] = min(int(params["n_steps"]), max(8, steps))
        params["batch_size"] = min(int(params["batch_size"]), int(params["n_steps"]))
    curve: list[Episode] = []

    class _Record(BaseCallback):  # type: ignore[misc]
        """Records every finished episode and reports progress."""

        last = 0.0

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                ep = info.get("episode")
                if ep is not None:
                    curve.append(
                        Episode(
                            self.num_timesteps,
                            float(ep["r"]),
                            int(ep["l"]),
                            float(info.get("jct", math.nan)),
                            float(info.get("wait", math.nan)),
                            float(info.get("baseline_jct", math.nan)),
                        )
                    )
            now = time.perf_counter()
            if progress is not None and (now - self.last >= 0.2 or self.num_timesteps >= steps):
                self.last = now
                progress(Progress(self.num_timesteps, steps, len(curve), curve[-1].reward if curve else math.nan))
            return True

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        env.reset(seed=seed)
        cls = DQN if algo == "dqn" else PPO
        model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, tensorboard_log=None, **params)
        model.learn(total_timesteps=steps, callback=_Record(), progress_bar=False)
    finally:
        torch.set_num_threads(previous)
    seconds = time.perf_counter() - started
    if progress is not None:
        progress(Progress(steps, steps, len(curve), curve[-1].reward if curve else math.nan))
    return Trained(model, algo, env, tuple(curve), steps, seed, seconds, params, dict(trained_on or {}))


def env_settings(env: AllocationEnv) -> dict[str, Any]:
    """What a policy needs to observe and act as it was trained (saved with the model)."""
    return {
        "mode": env.mode,
        "arms": list(env.arm_names),
        "rule": env.rule,
        "features": env.features.to_dict(),
        "reward": env.reward_weights.to_dict(),
        "budget": env.budget,
        "tiers": list(env.tiers),
        "window": env.window,
        "tick": env.sim.tick,
    }


def save(trained: Trained, path: str | Path) -> Path:
    """Write ``trained`` to ``path`` (a ``.zip``: the stable-baselines3 model, plus ``optalloc.json``)."""
    out = Path(path)
    if out.suffix != ".zip":
        raise ProblemError("out", str(out), "is not a .zip path")
    out.parent.mkdir(parents=True, exist_ok=True)
    trained.model.save(str(out))
    meta = {
        "format": FORMAT,
        "algo": trained.algo,
        "env": env_settings(trained.env),
        "steps": trained.steps,
        "seed": trained.seed,
        "seconds": round(trained.seconds, 3),
        "episodes": len(trained.curve),
        "trained_on": dict(trained.trained_on),
        "hyperparams": {k: v for k, v in trained.hyperparams.items() if _plain(v)},
    }
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr(META, json.dumps(meta, indent=2, sort_keys=True))
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``optalloc.json`` of a saved model (ProblemError when the file is not one)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file", str(p))
    try:
        with zipfile.ZipFile(p) as archive:
            raw = archive.read(META)
    except (zipfile.BadZipFile, KeyError, OSError):
        raise ProblemError("model", str(p), "is not a model saved by optalloc rl train (no optalloc.json)") from None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ProblemError("model", str(p), f"has an unreadable optalloc.json ({err.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("algo") not in ALGOS:
        raise ProblemError("model", str(p), f"has an optalloc.json of another format (expected format {FORMAT})")
    return meta


def write_curve(trained: Trained, path: str | Path, *, title: str = "") -> list[Path]:
    """The learning curve: ``<path>.png`` (episode return, and the episode's mean JCT over the
    baseline's on the same window -- or the mean JCT itself without a baseline --, against steps, with
    a moving average) and ``<path>.csv`` (one row per episode). Returns the files written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    base = Path(path)
    png, csv = base.with_suffix(".png"), base.with_suffix(".csv")
    rows = ["timesteps,reward,length,jct_s,wait_s,baseline_jct_s"]
    rows += [
        f"{e.timesteps},{e.reward:.6g},{e.length},{e.jct:.6g},{e.wait:.6g},{e.baseline_jct:.6g}" for e in trained.curve
    ]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    fig = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = np.array([e.timesteps for e in trained.curve], dtype=np.float64)
    baseline = trained.env.baseline
    if baseline is not None:
        lower = ([e.jct / e.baseline_jct for e in trained.curve], f"mean JCT / {baseline}'s")
    else:
        lower = ([e.jct / 3600 for e in trained.curve], "mean JCT of the episode (h)")
    for ax, values, label in ((top, [e.reward for e in trained.curve], "episode return"), (bottom, *lower)):
        y = np.array(values, dtype=np.float64)
        ax.plot(x, y, ".", alpha=0.35, label="episode")
        if len(y) >= 2:
            k = max(1, min(20, len(y) // 5))
            smooth = np.convolve(
                np.nan_to_num(y, nan=np.nanmean(y) if np.isfinite(y).any() else 0.0), np.ones(k) / k, "valid"
            )
            ax.plot(x[k - 1 :], smooth, "-", label=f"moving average of {k}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if baseline is not None:
        bottom.axhline(1.0, color="grey", lw=0.8)
    bottom.set_xlabel("training steps (decisions)")
    top.set_title(title or f"{trained.algo.upper()} learning curve ({trained.steps} steps, seed {trained.seed})")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return [png, csv]


def _plain(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
