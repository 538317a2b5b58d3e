"""The algorithm-choice mode's actions: which scheduling algorithm takes this step.

An *arm* is a name and the :class:`~optalloc.adaptive.ControllerConfig` the controller step runs with
when the agent picks it (for that step only):

- ``<order>+<rule>``: a queue ordering x a placement rule of :mod:`optalloc.heuristics`, exactly the
  simulator's heuristic policy of that name (:func:`optalloc.sim.policy`): the rule places the waiting
  jobs in that order around the running ones, nobody moves;
- ``exact``: re-solve the window now with CP-SAT (method ``cpsat``, warm-started by the best heuristic),
  within ``budget`` seconds, migrations allowed (at most 2 running jobs moved per step), with the
  rolling-horizon policy's duration tiers (``tiers``: thresholds of estimated remaining time; shorter
  tiers first), in deterministic mode (a work limit, one worker) so that an episode replays the same
  for a seed. It is what the ``rolling-horizon`` loop does at a re-solve, at a step the agent chooses.

:data:`ALL` is every ordering x every rule, then ``exact``; :data:`COMPACT` a smaller set (the five
orderings the simulator compares x best-fit and FGD, then ``exact``) that learns faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from optalloc.adaptive import ControllerConfig, DriftConfig
from optalloc.core import ProblemError
from optalloc.sim import policy as sim_policy

EXACT = "exact"


def _all() -> tuple[str, ...]:
    from optalloc import heuristics

    return (*(f"{o}+{r}" for o in heuristics.ORDERS for r in heuristics.RULES), EXACT)


ALL: tuple[str, ...] = _all()
COMPACT: tuple[str, ...] = (
    *(f"{o}+{r}" for o in ("fcfs", "sjf", "ljf", "largest-demand-first", "round-robin") for r in ("best-fit", "fgd")),
    EXACT,
)
ARM_SETS = {"all": ALL, "compact": COMPACT}


@dataclass(frozen=True)
class Arm:
    """One action of the algorithm-choice mode: ``name`` and the step's ``config``."""

    name: str
    config: ControllerConfig


def arm(name: str, *, budget: float = 0.5, seed: int = 0, tiers: Sequence[float] = ()) -> Arm:
    """The arm called ``name`` (``<order>+<rule>`` or ``exact``; module docstring). ``tiers``: the
    exact arm's duration tiers (:func:`optalloc.adaptive.tiers.thresholds_for` the estimated durations)."""
    if name == EXACT:
        every_event = DriftConfig(arrivals=1, arrival_gpu_milli=1, freed_gpu_milli=1, min_interval=0.0)
        cfg = ControllerConfig.of(
            method="cpsat",
            budget=budget,
            seed=seed,
            workers=1,
            deterministic=True,
            max_migrations=2,
            drift=every_event,
            duration_tiers=tuple(tiers),
        )
        return Arm(name, cfg)
    if not isinstance(name, str) or "+" not in name:
        raise ProblemError("arms", name, f"is not <order>+<rule> or {EXACT!r}")
    head = name.partition("+")[0]
    from optalloc import heuristics

    rule = name.partition("+")[2]
    if head not in heuristics.ORDERS:  # keeps exact policies (rolling-horizon+fgd) out of the arms
        raise ProblemError("arms", name, f"has an unknown order {head!r} (known: {', '.join(heuristics.ORDERS)})")
    if rule not in heuristics.RULES:
        raise ProblemError("arms", name, f"has an unknown rule {rule!r} (known: {', '.join(heuristics.RULES)})")
    return Arm(name, sim_policy(name, seed=seed).config)


def arms(
    names: Sequence[str] | str | None = None, *, budget: float = 0.5, seed: int = 0, tiers: Sequence[float] = ()
) -> tuple[Arm, ...]:
    """The arms called ``names`` (a list, or a set name: ``all``, ``compact``; default ``all``)."""
    chosen: Sequence[str]
    if names is None:
        chosen = ALL
    elif isinstance(names, str):
        if names not in ARM_SETS:
            raise ProblemError("arms", names, f"is not a set of arms ({', '.join(ARM_SETS)}) nor a list")
        chosen = ARM_SETS[names]
    else:
        chosen = list(names)
    if not chosen:
        raise ProblemError("arms", list(chosen), "is empty")
    if len(set(chosen)) != len(chosen):
        raise ProblemError("arms", list(chosen), "has duplicates")
    return tuple(arm(n, budget=budget, seed=seed, tiers=tiers) for n in chosen)


def base_config(seed: int = 0) -> ControllerConfig:
    """The configuration of the steps nobody chooses for (nothing to decide): FCFS + best-fit's."""
    return replace(sim_policy("fcfs+best-fit", seed=seed).config)
