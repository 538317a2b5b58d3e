"""What running jobs really use, as opposed to what they asked for: seeded, configurable profiles.

Deep-learning jobs seldom keep their GPUs, CPUs and memory as busy as they requested (Jeon et al.,
"Analysis of Large-Scale Multi-Tenant GPU Clusters for DNN Training Workloads", ATC'19, report a median
GPU utilisation near 50% on Philly). The simulator makes that real so that the controller's drift
detection has something to detect: job ``j`` uses, of resource ``r`` (GPU, CPU, memory),

    u_{j,r}(t) = clip(b_{j,r} * (1 + swing * sin(2 pi t / period + phase_j)), 0, 1) x its request,

where the base fraction ``b_{j,r}`` is drawn once per job from a Beta distribution of mean ``mean_r``
and concentration ``concentration`` (``a + b``), and ``phase_j`` uniformly: a job keeps its own level
with a slow periodic swing (epochs, evaluation phases). Draws come from ``numpy.random.default_rng(seed)``
over the scenario's job list, so every policy of a comparison sees the same usage for the same job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optalloc.core import ProblemError

RESOURCES = ("gpu", "cpu", "memory")


@dataclass(frozen=True)
class UsageProfile:
    """Mean used fraction of the request per resource, the spread around it, and the periodic swing.

    ``gpu``, ``cpu``, ``memory``: mean fraction of the request in use (0..1; 1 with ``concentration=inf``
    means exactly the request). ``concentration``: Beta ``a + b`` (larger = jobs closer to the mean).
    ``swing``: relative amplitude of the periodic variation (0 = constant). ``period``: seconds.
    """

    gpu: float = 0.55
    cpu: float = 0.5
    memory: float = 0.7
    concentration: float = 6.0
    swing: float = 0.2
    period: float = 3600.0

    def __post_init__(self) -> None:
        for name in RESOURCES:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise ProblemError(f"usage.{name}", value, "is not a fraction in (0, 1]")
        if not self.concentration > 0:
            raise ProblemError("usage.concentration", self.concentration, "is not positive")
        if not 0 <= self.swing <= 1:
            raise ProblemError("usage.swing", self.swing, "is not in [0, 1]")
        if not self.period > 0:
            raise ProblemError("usage.period", self.period, "is not a positive number of seconds")

    @property
    def means(self) -> np.ndarray:
        return np.array([self.gpu, self.cpu, self.memory], dtype=np.float64)

    def draw(self, jobs: int, seed: int) -> UsageDraw:
        """Base fractions and phases for ``jobs`` jobs (same seed, same draw)."""
        rng = np.random.default_rng(seed)
        means = self.means
        if math.isinf(self.concentration):
            base = np.broadcast_to(means, (jobs, 3)).copy()
        else:
            a = np.maximum(means * self.concentration, 1e-6)
            b = np.maximum((1 - means) * self.concentration, 1e-6)
            base = rng.beta(a, b, size=(jobs, 3))
            base[:, means >= 1] = 1.0
        phase = rng.uniform(0.0, 2 * math.pi, size=jobs)
        return UsageDraw(base, phase, self.swing, self.period)


@dataclass(frozen=True, eq=False)
class UsageDraw:
    """Per-job base fractions (jobs, 3) and phases (jobs,) of one profile and seed."""

    base: np.ndarray
    phase: np.ndarray
    swing: float
    period: float

    def fraction(self, jobs: np.ndarray, time: float) -> np.ndarray:
        """float64 (len(jobs), 3): used fraction of the request of GPU, CPU, memory at ``time`` (s)."""
        base: np.ndarray = self.base[jobs]
        if not self.swing:
            return base
        wave = 1.0 + self.swing * np.sin(2 * math.pi * time / self.period + self.phase[jobs])
        out: np.ndarray = np.clip(base * wave[:, None], 0.0, 1.0)
        return out


# Named presets for the CLI and the benchmarks.
PROFILES: dict[str, UsageProfile] = {
    # every job uses exactly what it asked for: no drift at all
    "exact": UsageProfile(gpu=1.0, cpu=1.0, memory=1.0, concentration=math.inf, swing=0.0),
    # Philly-like: GPUs half busy on median, CPU and memory over-requested
    "typical": UsageProfile(),
    # most jobs keep their GPUs mostly idle (interactive notebooks, data-bound input pipelines)
    "idle": UsageProfile(gpu=0.25, cpu=0.3, memory=0.5, concentration=4.0, swing=0.3),
}


def profile(name: str) -> UsageProfile:
    """The preset called ``name`` (see :data:`PROFILES`)."""
    if name not in PROFILES:
        raise ProblemError("usage", name, f"is not one of {', '.join(PROFILES)}")
    return PROFILES[name]
