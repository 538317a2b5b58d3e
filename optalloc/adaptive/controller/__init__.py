"""The controller: one pure step of the adaptive loop.

``step(state, now, observations, events) -> (state, plan)``. The caller owns the clock (``now``, seconds)
and the world: it passes what it observed (an :class:`~optalloc.adaptive.monitor.Observation`, or None)
and what happened (:class:`Event`: arrivals, completions, nodes lost or added), and gets back the next
state and a :class:`Plan` of changes (starts, preemptions, migrations, resizes, each with its reason)
plus the allocation that should run. The CLI (``optalloc watch``), the simulator and a future service
all drive this same step.

What a step does, cheapest first:

1. apply the events (a completion frees its resources, a lost node's jobs go back to the queue);
2. fold a fresh observation into the smoothed drift (stale data is recorded as stale and not acted on);
3. ask :func:`optalloc.adaptive.drift.decide` whether to re-solve: drift above its threshold, enough
   arrivals, enough freed capacity, a node event, or the very first step with jobs waiting;
4. **re-solve** (when triggered): optionally right-size requests from observed usage, then solve the
   window (running + queued jobs) with ``config.method`` under ``config.budget`` seconds, migrations
   allowed at the migration weight, falling back to the ``config.fallback`` heuristic when the exact
   method has no answer in time (``plan.fallback`` says why; an engine's exception is not caught);
   with ``config.horizon`` set, the horizon model picks which queued jobs
   start now and only those are placed. The number of jobs moved or preempted is capped at
   ``config.max_migrations``; the rest keep running where they run;
5. otherwise **admit** (when jobs wait and something changed): the fallback heuristic places what fits
   around the running jobs, without moving any (the horizon model decides instead when it is on, and
   ``config.method`` solves the admission with ``config.admit_exact``);
6. otherwise nothing: the plan is empty and the allocation is the last one (no solve, no rebuild).

``prepare`` (steps 1-2) and ``act`` (steps 3-6) are the two halves of ``step``, for drivers that choose
between them; ``config.selector`` (a :class:`Selector`, e.g. a trained policy) makes that choice inside
``step`` at every step that has something to decide.

Modules: :mod:`~optalloc.adaptive.controller.config` (the knobs, with the solves' ``SolveOptions``),
:mod:`~optalloc.adaptive.controller.state`, :mod:`~optalloc.adaptive.controller.step` (events,
observations, the decision to solve), :mod:`~optalloc.adaptive.controller.resolve` (the window, the
method or its fallback) and :mod:`~optalloc.adaptive.controller.commit` (the migration cap, the actions).
"""

from optalloc.adaptive.controller.config import ControllerConfig, Selector
from optalloc.adaptive.controller.state import ControllerState
from optalloc.adaptive.controller.step import Prepared, act, events_between, prepare, step

__all__ = ["ControllerConfig", "ControllerState", "Prepared", "Selector", "act", "events_between", "prepare", "step"]
