"""What one simulation is asked to do: :class:`SimConfig` (clock, restarts, usage, checks, engine) and
:class:`FailureModel` (node failures)."""

from __future__ import annotations

from dataclasses import dataclass

from optalloc.core import ProblemError
from optalloc.sim.usage import PROFILES, UsageProfile

# How decisions are taken: the production controller step, or the direct engine (heuristics only).
ENGINES = ("controller", "direct")


@dataclass(frozen=True)
class FailureModel:
    """Node failures, random and/or scheduled.

    Random: with ``mtbf`` set, each node fails after an exponential time of mean ``mtbf`` seconds
    (drawn per node from ``seed``, the same for every policy) and is back ``repair`` seconds later, then
    fails again after a new draw. Scheduled: ``outages`` lists ``(node name, time, seconds down)``.
    """

    mtbf: float | None = None
    repair: float = 3600.0
    seed: int = 0
    outages: tuple[tuple[str, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mtbf is not None and not self.mtbf > 0:
            raise ProblemError("failures.mtbf", self.mtbf, "is not a positive number of seconds")
        if not self.repair >= 0:
            raise ProblemError("failures.repair", self.repair, "is negative")
        outages: list[tuple[str, float, float]] = []
        for i, outage in enumerate(self.outages):
            try:
                name, at, down = outage
                item = (str(name), float(at), float(down))
            except (TypeError, ValueError):
                raise ProblemError(f"failures.outages[{i}]", outage, "is not (node name, time, seconds down)") from None
            if not isinstance(name, str) or not item[2] >= 0:
                raise ProblemError(f"failures.outages[{i}]", outage, "is not (node name, time, seconds down)")
            outages.append(item)
        object.__setattr__(self, "outages", tuple(outages))


@dataclass(frozen=True)
class SimConfig:
    """Knobs of one simulation.

    ``tick``: seconds between controller ticks (each carries an observation; 0 = no ticks).
    ``react``: step at every arrival / completion too (False: only at ticks). ``restart_penalty``:
    seconds without progress after a restart. ``keep_progress``: a restarted job keeps its work done.
    ``usage``: the usage profile (a :class:`UsageProfile` or a preset name). ``seed``: usage draws.
    ``failures``: node failures (None: none). ``until``: stop at this simulated time, seconds (None: when
    every job has finished). ``verify``: check every committed allocation with ``optalloc.verify``
    and the simulator's own books (slow: tests). ``keep_plans``: keep every plan that changed
    something (for inspection). ``engine``: ``controller`` (default: every decision by the production
    step) or ``direct`` (heuristic policies only: the same decisions on one persistent placer, orders
    of magnitude faster; see :mod:`optalloc.sim.direct`).
    """

    tick: float = 60.0
    react: bool = True
    restart_penalty: float = 30.0
    keep_progress: bool = True
    usage: UsageProfile | str = "typical"
    seed: int = 0
    failures: FailureModel | None = None
    until: float | None = None
    verify: bool = False
    keep_plans: bool = False
    engine: str = "controller"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ProblemError("engine", self.engine, f"is not one of {', '.join(ENGINES)}")
        if not (isinstance(self.tick, int | float) and self.tick >= 0):
            raise ProblemError("tick", self.tick, "is not a number of seconds >= 0")
        if not self.react and not self.tick:
            raise ProblemError("react", self.react, "is false with tick=0: the controller would never step")
        if not (isinstance(self.restart_penalty, int | float) and self.restart_penalty >= 0):
            raise ProblemError("restart_penalty", self.restart_penalty, "is not a number of seconds >= 0")
        if isinstance(self.usage, str):
            if self.usage not in PROFILES:
                raise ProblemError("usage", self.usage, f"is not one of {', '.join(PROFILES)}")
            object.__setattr__(self, "usage", PROFILES[self.usage])

    @property
    def profile(self) -> UsageProfile:
        assert isinstance(self.usage, UsageProfile)
        return self.usage
