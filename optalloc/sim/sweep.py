"""Sweeps: many simulations -- (scenario, policy, configuration) runs -- serially, in a local process pool,
or as Ray tasks, gathered in the order given.

A run is independent of every other (its own world, clock and seeds), so where it runs changes nothing
it decides: a deterministic policy (every heuristic one) gives the same :meth:`SimResult.outcome` in a
sweep on Ray as in a serial run. Policies with a time budget per re-solve (CP-SAT, the rolling horizon)
decide within wall-clock seconds, so their answers may differ wherever the CPU they get differs --
between two serial runs on a busy machine as much as between executors.

- ``serial``: one run after another in this process (live progress reports).
- ``local``: a pool of forked processes on this machine (``processes``, default: the CPUs this process
  may use); the runs are handed over in memory, not pickled; only results travel back.
- ``ray``: one Ray task per run (``num_cpus=1``). Ray is imported here, when a sweep asks for it; it is
  initialised unless it already is: ``ray.init(address=ray_address)`` -- a local runtime by default, or
  a running cluster's address (``"127.0.0.1:6379"``, ``"auto"``). Each scenario is put in Ray's object
  store once, however many runs share it. The runtime stays up afterwards (the next sweep reuses it).
  A program that runs the sweep in a worker thread calls :func:`start_ray` from its main thread first
  (Ray's local processes end with the thread that started them).
  Policies must be built from registered method names: a method registered at run time in this
  process (``optalloc.solve.register``) does not exist in Ray's workers.

The slow runs (policies that are not heuristics) start first, so that the pool is not left waiting
for one of them at the end. ``stop`` (anything with ``is_set()``, e.g. a :class:`threading.Event`)
ends a sweep early: runs not finished are None in the answer (the serial run in progress stops at its
next progress report, pool workers are terminated, Ray tasks cancelled).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from optalloc.core import ProblemError, SolverError, usable_cpus
from optalloc.sim.config import SimConfig
from optalloc.sim.policies import Policy
from optalloc.sim.replay import simulate
from optalloc.sim.result import Progress, SimResult
from optalloc.sim.workloads import Scenario

__all__ = ["EXECUTORS", "Run", "compare", "grid", "start_ray", "sweep"]

#: Where the runs of a sweep may run.
EXECUTORS = ("serial", "local", "ray")

# How often (seconds) a parallel sweep looks at its stop flag while it waits for results.
_POLL = 0.2


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Run:
    """One simulation of a sweep: ``scenario`` replayed under ``policy`` with ``config`` (its seed,
    usage, failures, clock)."""

    scenario: Scenario
    policy: Policy
    config: SimConfig

    @property
    def label(self) -> str:
        return f"{self.scenario.name}/{self.policy.name}/seed {self.config.seed}"


def grid(scenarios: Sequence[Scenario], policies: Sequence[Policy], configs: Sequence[SimConfig]) -> list[Run]:
    """Every (scenario, policy, configuration) combination, scenario-major: the usual evaluation sweep
    (traces x policies x seeds; build one :class:`SimConfig` per seed with ``dataclasses.replace``)."""
    return [Run(s, p, c) for s in scenarios for p in policies for c in configs]


def compare(
    scenario: Scenario,
    policies: Sequence[Policy],
    config: SimConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    executor: str = "serial",
    processes: int | None = None,
    ray_address: str | None = None,
) -> list[SimResult]:
    """:func:`~optalloc.sim.replay.simulate` for each policy on the same scenario, seed, usage and
    failures, in the order given; ``executor`` as in :func:`sweep`."""
    cfg = config if config is not None else SimConfig()
    results = sweep(
        [Run(scenario, p, cfg) for p in policies],
        executor=executor,
        processes=processes,
        ray_address=ray_address,
        progress=progress,
    )
    return [r for r in results if r is not None]


def sweep(
    runs: Sequence[Run],
    *,
    executor: str = "serial",
    processes: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    stop: StopFlag | None = None,
) -> list[SimResult | None]:
    """Simulate every run; the results in the order of ``runs`` (None: not finished before ``stop``).

    ``executor``: ``serial``, ``local`` (``processes`` forked workers; default: the CPUs this process
    may use) or ``ray`` (``ray_address``: a running cluster; default: a local runtime). ``progress``:
    called in this process -- during a serial run as it goes, else once per finished run. A run that
    fails raises here (its exception, from whichever process or Ray task ran it).
    """
    runs = list(runs)
    for i, run in enumerate(runs):
        if not isinstance(run, Run):
            raise ProblemError(f"runs[{i}]", run, "is not a Run")
    if executor not in EXECUTORS:
        raise ProblemError("executor", executor, f"is not one of {', '.join(EXECUTORS)}")
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ProblemError("processes", processes, "is not a positive number of processes")
    if processes is not None and executor != "local":
        raise ProblemError("processes", processes, f"is for the local pool, not the {executor} executor")
    if ray_address is not None and executor != "ray":
        raise ProblemError("ray_address", ray_address, f"is for the ray executor, not {executor}")
    if not runs:
        return []
    if executor == "serial":
        return _serial(runs, progress, stop)
    if executor == "local":
        return _local(runs, processes or usable_cpus(), progress, stop)
    return _ray(runs, ray_address, progress, stop)


def _slow_first(runs: Sequence[Run]) -> list[int]:
    return sorted(range(len(runs)), key=lambda i: runs[i].policy.kind == "heuristic")


def _finished(result: SimResult) -> Progress:
    """The last progress report of a finished run (parallel sweeps report runs as they finish)."""
    jobs = len(result.jobs.names)
    return Progress(result.policy, jobs - result.metrics.unfinished, jobs, result.counters.events, result.metrics.end)


class _Stopped(Exception):
    """Raised in a serial run's progress callback once the sweep is asked to stop."""


def _serial(
    runs: list[Run], progress: Callable[[Progress], None] | None, stop: StopFlag | None
) -> list[SimResult | None]:
    results: list[SimResult | None] = [None] * len(runs)

    def report(p: Progress) -> None:
        # A run whose every job is done is left to finish its books: it was reported done (and the CLI
        # said so) before its last reports, and a Ctrl-C then must not drop it.
        if stop is not None and stop.is_set() and p.done < p.total:
            raise _Stopped
        if progress is not None:
            progress(p)

    for i, run in enumerate(runs):
        if stop is not None and stop.is_set():
            break
        try:
            results[i] = simulate(run.scenario, run.policy, run.config, progress=report)
        except _Stopped:
            break
    return results


# Local pool -------------------------------------------------------------------------------------------
# The runs of the sweep in progress, inherited by the forked workers: only an index travels to them.
_FORKED: list[Run] = []


def _simulate_forked(i: int) -> SimResult:
    run = _FORKED[i]
    try:
        return simulate(run.scenario, run.policy, run.config)
    except Exception as err:  # re-raised as is, or as a stand-in that survives the trip back
        raise _portable(err) from None


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling, else a :class:`SolverError` that names it: an exception the
    pool cannot rebuild in this process would leave the sweep waiting for a result forever."""
    try:
        pickle.loads(pickle.dumps(err))
    except (pickle.PickleError, TypeError, AttributeError, ValueError):  # it cannot travel: a stand-in that names it
        return SolverError(f"a run of the sweep failed with {type(err).__name__}: {err}")
    return err


def _local(
    runs: list[Run], processes: int, progress: Callable[[Progress], None] | None, stop: StopFlag | None
) -> list[SimResult | None]:
    import multiprocessing as mp

    results: list[SimResult | None] = [None] * len(runs)
    _FORKED[:] = runs
    pool = mp.get_context("fork").Pool(min(processes, len(runs)))
    pending = {i: pool.apply_async(_simulate_forked, (i,)) for i in _slow_first(runs)}
    try:
        while pending:
            if stop is not None and stop.is_set():
                break
            done = [i for i, r in pending.items() if r.ready()]
            if not done:
                next(iter(pending.values())).wait(_POLL)
                continue
            for i in done:
                result = pending.pop(i).get()  # re-raises the run's exception here
                results[i] = result
                if progress is not None:
                    progress(_finished(result))
    finally:
        if pending:  # a stopped sweep, or a run that failed: the others are not waited for
            pool.terminate()
        else:
            pool.close()  # every worker ends on its own
        pool.join()
        _FORKED.clear()
    return results


# Ray --------------------------------------------------------------------------------------------------
def _simulate_task(scenario: Scenario, policy: Policy, config: SimConfig) -> SimResult:
    return simulate(scenario, policy, config)


def start_ray(address: str | None = None) -> str:
    """Connect this process to Ray unless it already is: a running cluster at ``address`` (host:port,
    ``"auto"``), else a new local runtime. Returns where it runs (``"Ray at 127.0.0.1:6379, 2 CPUs"``).

    Call it from the thread that lives as long as the runtime should -- the main thread of a program
    that runs a sweep in a worker thread: Ray's local processes are started with a parent-death signal,
    so they end when the *thread* that started them ends (and the driver fails at its next use of Ray).
    """
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    return f"Ray at {ray.get_runtime_context().gcs_address}, {cpus:g} CPUs"


def _ray(
    runs: list[Run], address: str | None, progress: Callable[[Progress], None] | None, stop: StopFlag | None
) -> list[SimResult | None]:
    import ray

    start_ray(address)
    task: Any = ray.remote(num_cpus=1, max_retries=0)(_simulate_task)
    stored: dict[int, Any] = {}  # one object per distinct scenario, however many runs share it
    refs: dict[Any, int] = {}
    for i in _slow_first(runs):
        run = runs[i]
        key = id(run.scenario)
        if key not in stored:
            stored[key] = ray.put(run.scenario)
        refs[task.remote(stored[key], run.policy, run.config)] = i
    results: list[SimResult | None] = [None] * len(runs)
    try:
        while refs:
            if stop is not None and stop.is_set():
                break
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL)
            for ref in ready:
                i = refs.pop(ref)
                result = ray.get(ref)  # re-raises the run's exception here
                results[i] = result
                if progress is not None:
                    progress(_finished(result))
    finally:
        for ref in refs:  # stopped, or a run failed: the others are not waited for
            ray.cancel(ref, force=True)
    return results
