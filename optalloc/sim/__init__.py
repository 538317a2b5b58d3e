"""The trace-driven simulator: replay a workload through the adaptive loop's pure step and measure it.

Every policy -- the classic heuristics as much as CP-SAT and the rolling-horizon loop -- is a
:class:`~optalloc.adaptive.ControllerConfig` of :func:`optalloc.adaptive.step`, the step the production
loop runs; the simulator owns the clock and the world (arrivals, completions, ticks with observed usage,
node failures). ``optalloc.adaptive`` never imports this package. See docs/simulator.md.

```python
from optalloc import sim

scenario = sim.gavel_scenario(trace, throughputs, {"v100": 32, "p100": 32, "k80": 32})
results = sim.compare(scenario, sim.policies(["fcfs+best-fit", "rolling-horizon"]), sim.SimConfig(tick=300))
print(sim.report_table(results, baseline="fcfs+best-fit"))
sim.write_report("sim-out", scenario, results, sim.SimConfig(tick=300))
```

Modules: :mod:`~optalloc.sim.workloads` (scenarios), :mod:`~optalloc.sim.policies` (the registry of
policies), :mod:`~optalloc.sim.usage` (what jobs really use), :mod:`~optalloc.sim.config` and
:mod:`~optalloc.sim.result` (what a run is asked and gives back), :mod:`~optalloc.sim.replay` (the event
loop, :class:`Replay`, which a driver may also step itself, over :mod:`~optalloc.sim.events`, :mod:`~optalloc.sim.books`, :mod:`~optalloc.sim.sampling` and
:mod:`~optalloc.sim.checks`), :mod:`~optalloc.sim.direct` (the fast engine for heuristic policies),
:mod:`~optalloc.sim.sweep` (many runs: serially, in a local process pool, or as Ray tasks),
:mod:`~optalloc.sim.timeshare` (the time-share policies' rounds, driven through the time-share loop),
:mod:`~optalloc.sim.metrics` (the definitions), :mod:`~optalloc.sim.report` (files and tables) and
:mod:`~optalloc.sim.plots` (figures, with matplotlib's object API: no process-wide backend).
"""

from optalloc.sim.config import FailureModel, SimConfig
from optalloc.sim.metrics import Counters, JobTable, Metrics, Timeline, compute
from optalloc.sim.plots import PLOTS, write_plots
from optalloc.sim.policies import EXACT, GROUPS, TIMESHARE, Policy, TimeshareSpec, horizon_for, policies, policy
from optalloc.sim.replay import Pending, Replay, simulate
from optalloc.sim.report import table as report_table
from optalloc.sim.report import write as write_report
from optalloc.sim.result import Progress, SimResult
from optalloc.sim.sweep import EXECUTORS, Run, compare, grid, start_ray, sweep
from optalloc.sim.usage import PROFILES, UsageProfile
from optalloc.sim.workloads import Scenario, gavel_scenario, openb_scenario, parse_counts

__all__ = [
    "EXACT",
    "EXECUTORS",
    "GROUPS",
    "PLOTS",
    "PROFILES",
    "TIMESHARE",
    "Counters",
    "FailureModel",
    "JobTable",
    "Metrics",
    "Pending",
    "Policy",
    "Progress",
    "Replay",
    "Run",
    "Scenario",
    "SimConfig",
    "SimResult",
    "Timeline",
    "TimeshareSpec",
    "UsageProfile",
    "compare",
    "compute",
    "gavel_scenario",
    "grid",
    "horizon_for",
    "openb_scenario",
    "parse_counts",
    "policies",
    "policy",
    "report_table",
    "simulate",
    "start_ray",
    "sweep",
    "write_plots",
    "write_report",
]
