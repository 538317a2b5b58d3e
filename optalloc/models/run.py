"""What a backend returns after solving a Program: status as data, values, bound, timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optalloc.core import Status


@dataclass
class ProgramRun:
    """The outcome of one backend on one Program (objective and bound include the program's offsets)."""

    status: Status
    values: np.ndarray | None
    objective: float | None
    bound: float | None
    wall_time: float
    first_solution_time: float | None = None
    progress: list[tuple[float, float, float]] = field(default_factory=list)  # (seconds, objective, bound)
    stats: dict[str, Any] = field(default_factory=dict)
