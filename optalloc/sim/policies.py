"""The policies a simulation compares: each one is a :class:`ControllerConfig` of the same controller.

Every policy drives :func:`optalloc.adaptive.controller.step`, the production step; they differ only
in its configuration:

- ``<order>+<rule>`` (e.g. ``fcfs+best-fit``, ``sjf+fgd``): the heuristic ``rule`` places the waiting
  jobs in queue ``order`` at every event, running jobs never move (``method = fallback = rule``,
  ``allow_migration=False``). Orders: ``fcfs``, ``sjf``, ``ljf``, ``priority``, ``round-robin`` (and
  ``largest-demand-first``); rules: any of ``optalloc.heuristics.RULES``.
- ``cpsat-packing``: one-shot packing at every event: CP-SAT (``auto``: the best heuristic as a warm
  start, then CP-SAT) solves the queue around the running jobs at every arrival and every completion
  that frees GPU, without moving anyone.
- ``rolling-horizon``: the adaptive loop, ``ControllerConfig(duration_tiers=...)``: re-solves on drift
  and on events with migrations allowed (at most ``max_migrations`` per step), heuristic admission in
  between, and Tiresias-style duration tiers (:mod:`optalloc.adaptive.tiers`; thresholds: the quartiles
  of the scenario's duration estimates) when the trace has estimates.
- ``rolling-horizon-fcfs``: the same loop as ``ControllerConfig()`` configures it by default: FCFS
  queue, no tiers (what the loop is worth without duration estimates).
- ``rolling-horizon-packing``: ``rolling-horizon-fcfs`` whose admissions between re-solves are packing
  solves of the method too (``admit_exact=True``): CP-SAT packs the queue around the running jobs at
  every event, as ``cpsat-packing`` does, and the loop's re-solves may still migrate. The two halves
  win in different regimes (migrations while the queue is short and a large job is blocked by
  fragmentation; packing the queue once it is long), and this policy has both.
- ``horizon-model``: the same loop with the time-indexed horizon model
  (``ControllerConfig(horizon=HorizonConfig(...))``), sized from the scenario's duration estimates.
- ``<exact policy>+<rule>`` (e.g. ``rolling-horizon+fgd``): that policy with ``rule`` as its fallback
  heuristic, which also admits jobs between re-solves (default: best-fit; ``rolling-horizon-packing``
  admits with its method, so there ``rule`` is the fallback only).
- the time-share policies of :mod:`optalloc.timeshare` (``max-min-fairness``, ``finish-time-fairness``,
  ``max-sum-throughput``, ``min-makespan``, ``fifo``, ``srtf``, each also ``-agnostic``): not a
  configuration of the packing controller but of the time-share loop
  (:class:`optalloc.adaptive.timeshare.TimeshareLoop`), which the simulator drives instead
  (:mod:`optalloc.sim.timeshare`): re-solved at every arrival, completion and round, every round's
  assignment verified. ``round_length`` seconds per round (Gavel's 360 s by default); ``budget`` is the
  solver's time limit per stage; ``parts`` > 1 solves each program partitioned (POP,
  :mod:`optalloc.timeshare.partitioned`).

Groups: ``heuristics`` (the five orders x best-fit and FGD), ``exact`` (the five controller policies
above), ``all`` (both), ``timeshare`` (every time-share policy, aware and agnostic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from optalloc.adaptive.controller import ControllerConfig
from optalloc.adaptive.drift import DriftConfig
from optalloc.adaptive.tiers import thresholds_for
from optalloc.core import ProblemError
from optalloc.models.horizon import HorizonConfig

HEURISTIC_ORDERS = ("fcfs", "sjf", "ljf", "priority", "round-robin")
HEURISTIC_RULES = ("best-fit", "fgd")
EXACT = ("cpsat-packing", "rolling-horizon-fcfs", "rolling-horizon-packing", "rolling-horizon", "horizon-model")
GROUPS = {
    "heuristics": tuple(f"{o}+{r}" for r in HEURISTIC_RULES for o in HEURISTIC_ORDERS),
    "exact": EXACT,
}
GROUPS["all"] = GROUPS["heuristics"] + EXACT
#: The time-share policies (:mod:`optalloc.timeshare`), each heterogeneity-aware, then -agnostic.
TIMESHARE_BASE = ("max-min-fairness", "finish-time-fairness", "max-sum-throughput", "min-makespan", "fifo", "srtf")
TIMESHARE = tuple(name + suffix for name in TIMESHARE_BASE for suffix in ("", "-agnostic"))
GROUPS["timeshare"] = TIMESHARE


@dataclass(frozen=True)
class TimeshareSpec:
    """A time-share policy: its name (``-agnostic`` included), seconds per round, the solver's time limit
    per stage (None: none), and ``parts`` (> 1: each program solved partitioned into that many parts)."""

    name: str
    round_length: float = 360.0
    time_limit: float | None = None
    parts: int = 1


@dataclass(frozen=True)
class Policy:
    """A named controller configuration. ``kind``: ``heuristic``, ``exact`` (uses a solver) or
    ``timeshare`` (``timeshare`` set: the simulator drives the time-share loop, not the controller)."""

    name: str
    config: ControllerConfig
    description: str = ""
    kind: str = "exact"
    timeshare: TimeshareSpec | None = None


def policy(
    name: str,
    *,
    budget: float = 1.0,
    horizon: HorizonConfig | None = None,
    durations: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
    workers: int | None = None,
    round_length: float = 360.0,
    parts: int = 1,
) -> Policy:
    """The policy called ``name`` (see the module docstring).

    ``budget``: seconds per re-solve of the exact policies (per stage of a time-share program).
    ``horizon``: the horizon model's settings (default :func:`horizon_for` the estimated ``durations``).
    ``seed``/``workers``: for the engines. ``round_length``, ``parts``: for the time-share policies.
    """
    from optalloc import heuristics

    if not isinstance(name, str) or not name:
        raise ProblemError("policy", name, "is not a policy name")
    if name in TIMESHARE:
        return _timeshare(name, budget=budget, seed=seed, round_length=round_length, parts=parts)
    head, plus, rule = name.partition("+")
    if plus and head not in EXACT:
        order = head
        if order not in heuristics.ORDERS:
            raise ProblemError(
                "policy", name, f"has an unknown order {order!r} (known: {', '.join(heuristics.ORDERS)})"
            )
        if rule not in heuristics.RULES:
            raise ProblemError("policy", name, f"has an unknown rule {rule!r} (known: {', '.join(heuristics.RULES)})")
        cfg = ControllerConfig.of(
            method=rule, fallback=rule, order=order, allow_migration=False, max_migrations=0, seed=seed
        )
        return Policy(name, cfg, f"{order} queue, {rule} placement, no migration", "heuristic")
    if plus:  # an exact policy with another fallback heuristic (admission between re-solves)
        if rule not in heuristics.RULES:
            raise ProblemError("policy", name, f"has an unknown rule {rule!r} (known: {', '.join(heuristics.RULES)})")
        found = policy(head, budget=budget, horizon=horizon, durations=durations, seed=seed, workers=workers)
        role = "fallback" if found.config.admit_exact else "admission and fallback"  # admit_exact: the method admits
        return Policy(name, replace(found.config, fallback=rule), f"{found.description}; {rule} {role}")
    base = ControllerConfig.of(budget=budget, seed=seed, workers=workers)
    if name == "cpsat-packing":
        every_event = DriftConfig(arrivals=1, arrival_gpu_milli=1, freed_gpu_milli=1, min_interval=0.0)
        cfg = replace(base, method="auto", allow_migration=False, max_migrations=0, drift=every_event)
        return Policy(name, cfg, "CP-SAT packing of the queue at every arrival and completion, no migration")
    if name == "rolling-horizon":
        cuts = thresholds_for([] if durations is None else durations)
        cfg = replace(base, duration_tiers=cuts)
        tiers_text = f", {len(cuts) + 1} duration tiers" if cuts else ""
        return Policy(name, cfg, f"the adaptive loop: re-solve on drift and events, migrations{tiers_text}")
    if name == "rolling-horizon-fcfs":
        return Policy(name, base, "the adaptive loop as configured by default: FCFS queue, no duration tiers")
    if name == "rolling-horizon-packing":
        cfg = replace(base, admit_exact=True)
        return Policy(name, cfg, "the adaptive loop (FCFS, no tiers) with packing solves of the queue at every event")
    if name == "horizon-model":
        hz = horizon if horizon is not None else horizon_for(durations)
        cfg = replace(base, horizon=replace(hz, seed=seed))
        return Policy(
            name,
            cfg,
            f"the adaptive loop with the time-indexed horizon model ({hz.horizon:.0f} s, {hz.slots} slots)",
        )
    known = ", ".join([*GROUPS, *EXACT, *TIMESHARE, "<order>+<rule>"])
    raise ProblemError("policy", name, f"is not a policy (known: {known})")


def _timeshare(name: str, *, budget: float, seed: int, round_length: float, parts: int) -> Policy:
    from optalloc.timeshare import describe

    if not (isinstance(round_length, int | float) and round_length > 0):
        raise ProblemError("round_length", round_length, "is not a positive number of seconds")
    if not (isinstance(parts, int) and not isinstance(parts, bool) and parts >= 1):
        raise ProblemError("parts", parts, "is not a number of parts >= 1")
    spec = TimeshareSpec(name, float(round_length), budget, parts)
    split = f", POP-{parts}" if parts > 1 else ""
    text = f"time share, {round_length:.0f} s rounds{split}: {describe(name)}"
    return Policy(name, ControllerConfig.of(seed=seed), text, "timeshare", spec)


def policies(names: Iterable[str], **options: object) -> list[Policy]:
    """Policies by name, groups expanded, duplicates dropped (first wins), in the order given."""
    out: dict[str, Policy] = {}
    for name in names:
        for item in GROUPS.get(name, (name,)):
            if item not in out:
                out[item] = policy(item, **options)  # type: ignore[arg-type]
    return list(out.values())


def horizon_for(durations: Sequence[float] | np.ndarray | None, *, slots: int = 24) -> HorizonConfig:
    """A horizon model sized for jobs of these estimated durations (seconds): it looks as far ahead as
    the 90th percentile of the durations, with slots growing geometrically (15% each) so that the first
    ones are about 1% of the horizon (fine where decisions are taken now)."""
    values = np.asarray([] if durations is None else durations, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    length = float(np.percentile(values, 90)) if len(values) else 3600.0
    return HorizonConfig(horizon=max(600.0, length), slots=slots, growth=1.15)
