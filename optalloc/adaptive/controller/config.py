"""The controller's knobs: :class:`ControllerConfig`, with the options of its solves as one
:class:`~optalloc.core.options.SolveOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from optalloc.adaptive import tiers as tiers_mod
from optalloc.adaptive.drift import DriftConfig
from optalloc.adaptive.rightsize import RightSizing
from optalloc.core import ObjectiveWeights, ProblemError
from optalloc.core.options import SolveOptions
from optalloc.models.horizon import HorizonConfig

if TYPE_CHECKING:
    from optalloc.adaptive.controller.state import ControllerState
    from optalloc.core import Allocation

#: The options of the re-solves unless told otherwise: ``SolveOptions()`` with a 1 s time limit.
DEFAULT_OPTIONS = SolveOptions(time_limit=1.0)

#: Options the controller sets itself for every solve (a re-solve may migrate per ``allow_migration``,
#: admissions and the fallback never do; ``round`` is the step count, which ``round-robin`` rotates by).
_PER_SOLVE = ("allow_migration", "round")


def _default_options() -> SolveOptions:
    return DEFAULT_OPTIONS


@runtime_checkable
class Selector(Protocol):
    """Chooses how the controller acts at a step that has something to decide (``config.selector``).

    ``choose(state, now)`` sees the state with the step's events and observation applied and returns
    None (act as configured), a :class:`ControllerConfig` for this step only (e.g. another queue order
    and placement rule, or a re-solve by an exact method), or an :class:`~optalloc.core.Allocation`
    proposing what runs now (verified before it is adopted). A trained policy of :mod:`optalloc.rl` is
    one; the controller does not know how it decides.
    """

    def choose(self, state: ControllerState, now: float) -> ControllerConfig | Allocation | None: ...


@dataclass(frozen=True)
class ControllerConfig:
    """Knobs of the controller.

    ``method``: the engine of a re-solve (any name of ``optalloc.solve.methods()``; ``auto`` runs the
    best heuristic and CP-SAT). ``fallback``: the heuristic used when the method has no answer in time,
    and for admission between re-solves (unless ``admit_exact``). ``options``: the
    :class:`~optalloc.core.options.SolveOptions` of the method's solves -- ``time_limit`` is the budget
    of one re-solve (seconds), and ``workers``, ``seed``, ``order`` (the queue ordering given to the
    heuristics), ``warm_start``, ``fragmentation_guide``, ``relative_gap``, ... mean what they mean for
    ``optalloc.solve``; the controller sets ``allow_migration`` and ``round`` itself for each solve, so
    those two keep their defaults here. :meth:`of` builds a configuration from keyword arguments of
    both kinds (``ControllerConfig.of(method="auto", budget=2.0, seed=7)``).

    ``allow_migration``: a re-solve may move or preempt running preemptible jobs (each moved replica
    costs ``weights.migration`` in the objective); ``max_migrations``: at most this many jobs moved or
    preempted per step (the plan is trimmed to it: the others keep running where they run).
    ``weights``: the objective weights of every solve. ``drift``: drift detection and event triggers.
    ``horizon``: the time-indexed horizon model (None: plain packing re-solves); ``horizon_share``: part
    of the budget it may use (at most its own ``time_limit``). ``right_size``: opt-in right-sizing
    (None: off). ``admit``: between re-solves, place waiting jobs that fit without moving anyone.
    ``max_window``: queued jobs considered by one solve at most (by priority, then arrival).
    ``duration_tiers``: thresholds (seconds of estimated remaining time, increasing) of Tiresias-style
    tiers (:mod:`optalloc.adaptive.tiers`): every solve prefers shorter tiers within a priority, and the
    heuristics order the queue by tier, then arrival (the ``priority`` order). () = off.
    ``admit_exact``: admissions between re-solves also use ``method`` (around the running jobs, nothing
    moves) instead of the fallback heuristic: a packing solve at every event, as ``cpsat-packing`` does.
    ``selector``: a :class:`Selector` asked at every step that has something to decide how to act at
    that step (None: always as configured here).
    """

    method: str = "auto"
    fallback: str = "best-fit"
    options: SolveOptions = field(default_factory=_default_options)
    allow_migration: bool = True
    max_migrations: int = 2
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    drift: DriftConfig = field(default_factory=DriftConfig)
    horizon: HorizonConfig | None = None
    horizon_share: float = 0.5
    right_size: RightSizing | None = None
    admit: bool = True
    max_window: int = 2000
    duration_tiers: tuple[float, ...] = ()
    admit_exact: bool = False
    selector: Selector | None = None

    def __post_init__(self) -> None:
        for name in ("method", "fallback"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ProblemError(name, getattr(self, name), "is not a name")
        if not isinstance(self.options, SolveOptions):
            raise ProblemError("options", self.options, "is not a SolveOptions")
        if self.options.time_limit is None:
            raise ProblemError("options.time_limit", None, "is not a positive number of seconds (the re-solve budget)")
        for name in _PER_SOLVE:
            if getattr(self.options, name) != getattr(DEFAULT_OPTIONS, name):
                raise ProblemError(
                    f"options.{name}", getattr(self.options, name), "is set by the controller for each solve"
                )
        # Names are checked here, once: a misspelt method would otherwise fail every solve of the loop.
        from optalloc import heuristics
        from optalloc.solve import methods

        known = [m.name for m in methods()]
        for name in ("method", "fallback"):
            if getattr(self, name) not in known:
                raise ProblemError(name, getattr(self, name), f"is not a method (known: {', '.join(known)})")
        rules = [m.name for m in methods("heuristic")]
        if self.options.warm_start not in rules:
            raise ProblemError(
                "warm_start", self.options.warm_start, f"is not a heuristic rule (known: {', '.join(rules)})"
            )
        if self.options.order not in heuristics.ORDERS:
            raise ProblemError(
                "order", self.options.order, f"is not a queue ordering (known: {', '.join(heuristics.ORDERS)})"
            )
        object.__setattr__(self, "duration_tiers", tiers_mod.check_thresholds(self.duration_tiers))
        for name in ("allow_migration", "admit", "admit_exact"):
            if not isinstance(getattr(self, name), bool):
                raise ProblemError(name, getattr(self, name), "is not true or false")
        if not (isinstance(self.max_migrations, int) and self.max_migrations >= 0):
            raise ProblemError("max_migrations", self.max_migrations, "is not a non-negative integer")
        if not (isinstance(self.max_window, int) and self.max_window >= 1):
            raise ProblemError("max_window", self.max_window, "is not a positive integer")
        if not 0 < self.horizon_share < 1:
            raise ProblemError("horizon_share", self.horizon_share, "is not in (0, 1)")
        if self.selector is not None and not callable(getattr(self.selector, "choose", None)):
            raise ProblemError("selector", self.selector, "has no choose(state, now) method")

    @classmethod
    def of(cls, *, budget: float | None = None, options: SolveOptions | None = None, **values: Any) -> ControllerConfig:
        """A configuration from keyword arguments: the controller's own fields, and any field of
        :class:`~optalloc.core.options.SolveOptions` (``seed=7``, ``workers=1``, ``order="sjf"``,
        ``warm_start="fgd-plus"``, ...), applied over ``options`` (default :data:`DEFAULT_OPTIONS`).
        ``budget``: seconds per re-solve, the options' ``time_limit``."""
        solve_fields = {f.name for f in fields(SolveOptions)}
        own = {f.name for f in fields(cls)}
        changes = {k: values.pop(k) for k in list(values) if k in solve_fields and k not in own}
        if budget is not None:
            changes["time_limit"] = budget
        unknown = [k for k in values if k not in own]
        if unknown:
            known = ", ".join(sorted((own | solve_fields | {"budget"}) - {"options"}))
            raise ProblemError(unknown[0], values[unknown[0]], f"is not a controller option (known: {known})")
        base = options if options is not None else DEFAULT_OPTIONS
        return cls(options=SolveOptions.from_dict({**base.to_dict(), **changes}) if changes else base, **values)

    @property
    def budget(self) -> float:
        """Seconds one re-solve may take: ``options.time_limit``."""
        limit = self.options.time_limit
        assert limit is not None  # checked on construction
        return limit

    @property
    def queue_order(self) -> str:
        """The ordering the heuristics use: ``options.order``, except that the default ``fcfs`` becomes
        ``priority`` (tier, then arrival) when ``duration_tiers`` are set."""
        order = self.options.order
        return "priority" if self.duration_tiers and order == "fcfs" else order
