"""The reward: what a step of the environment is worth, from what the simulated time since the last
decision held.

Between two decisions the simulator integrates three curves (:attr:`optalloc.sim.Replay.area`): the
number of jobs waiting, the number running, and the GPUs allocated. The reward of a step is

    r = ( - jct   * d(job-seconds in the system: waiting + running)
          - wait  * d(job-seconds waiting)
          + alloc * d(GPU-seconds allocated) / GPUs of the cluster ) / scale

``scale`` is the mean runtime (seconds, on its fastest GPU model) of the episode's jobs, so that rewards
are about one per job-runtime whatever the trace. With the default weights (``jct=1``) the return of an
episode (undiscounted) is minus the sum of the jobs' completion times over ``scale``: maximising it is
minimising the mean JCT (Little's law: the area under "jobs in the system" is the sum of the JCTs).
``wait=1`` alone targets the mean queueing delay; ``alloc=1`` the GPU allocation over time.
``invalid``: subtracted when the agent names a job-choice action that is masked (the first candidate
is started instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optalloc.core import ProblemError

TARGETS = {"jct": "mean JCT", "wait": "mean queueing delay", "alloc": "GPU allocation"}


@dataclass(frozen=True)
class Reward:
    """The weights of the reward's terms (module docstring)."""

    jct: float = 1.0
    wait: float = 0.0
    alloc: float = 0.0
    invalid: float = 0.0

    def __post_init__(self) -> None:
        for name in ("jct", "wait", "alloc", "invalid"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
                raise ProblemError(f"reward.{name}", value, "is not a finite number")
            if value < 0:
                raise ProblemError(f"reward.{name}", value, "is negative (the sign of each term is fixed)")
        if not (self.jct or self.wait or self.alloc):
            raise ProblemError("reward", self.to_dict(), "weighs nothing (set jct, wait or alloc)")

    @classmethod
    def named(cls, name: str) -> Reward:
        """``jct``, ``wait`` or ``alloc``: that term alone, weight 1."""
        if name not in TARGETS:
            raise ProblemError("reward", name, f"is not one of {', '.join(TARGETS)}")
        return cls(**{k: (1.0 if k == name else 0.0) for k in TARGETS})

    @property
    def target(self) -> str:
        """The metric the reward targets, in words (the largest weight's)."""
        weights = {"jct": self.jct, "wait": self.wait, "alloc": self.alloc}
        return TARGETS[max(weights, key=lambda k: weights[k])]

    def of(self, delta: np.ndarray, gpus: float, scale: float) -> float:
        """The reward of an interval whose areas grew by ``delta`` = (waiting, running, GPUs allocated)."""
        waiting, running, allocated = (float(x) for x in delta)
        value = -self.jct * (waiting + running) - self.wait * waiting
        if gpus > 0:
            value += self.alloc * allocated / gpus
        return value / scale

    def to_dict(self) -> dict[str, float]:
        return {"jct": self.jct, "wait": self.wait, "alloc": self.alloc, "invalid": self.invalid}
