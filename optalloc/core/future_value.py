"""FutureValue: what the forecast demand could still place on a GPU, by the GPU's fill level.

The data type only: ``optalloc.models.future`` computes it (an LP over the job mix) and turns it into an
objective term; the heuristics consult it to hold back a job whose placement is worth less than the
capacity it takes (admission control, ``SolveOptions.admission_forecast``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optalloc.core.job import MILLI
from optalloc.core.state import ClusterState

#: The detail every engine gives a job that admission control leaves out (reason ``held back``).
HELD_BACK_DETAIL = "fits now; its capacity is worth more to the forecast demand"


@dataclass(frozen=True)
class FutureValue:
    """``values[i]``: future value (milli-GPU) of one GPU whose fill level is ``i * step`` milli."""

    step: int
    values: np.ndarray  # float64 (MILLI // step + 1,)
    forecast_milli: float  # milli-GPU of demand the forecast expects
    whole_demand: float  # of which asked as whole GPUs (in GPUs)
    fresh_gpus: int  # fully free GPUs when it was computed

    def at(self, used: np.ndarray) -> np.ndarray:
        """Values of GPUs with ``used`` milli taken (any shape; levels off the grid round up)."""
        index = np.clip(-(-np.asarray(used, dtype=np.int64) // self.step), 0, len(self.values) - 1)
        out: np.ndarray = self.values[index]
        return out

    def gain(self, used: np.ndarray, share: int) -> np.ndarray:
        """Change of future value when a share of ``share`` milli lands on GPUs with ``used`` milli taken."""
        used = np.asarray(used, dtype=np.int64)
        out: np.ndarray = self.at(used + share) - self.at(used)
        return out

    def of_state(self, state: ClusterState) -> float:
        """Sum of the future values of every GPU of ``state``."""
        slots = state.gpu >= 0
        return float(self.at(MILLI - state.gpu[slots]).sum())
