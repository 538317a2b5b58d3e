"""Evaluation: trained policies against the fixed ones, on windows of a trace the policy never saw.

:func:`evaluate` simulates every policy on every (window, seed) pair -- ``window`` consecutive jobs
from each of ``starts``, the usage drawn from ``seed`` -- with the same simulator settings, and returns
one :class:`Outcome` per run. Names are the simulator's (``fcfs+best-fit``, ``rolling-horizon``, ...),
trained models (``dqn:model.zip``, ``ppo:model.zip``), ``random`` / ``random:<arms>`` (a uniformly
random arm at every decision; default the ``compact`` arms) and ``random-job`` / ``random-job:<rule>``
(the job-choice mode's: a uniformly random job among the first 8 that fit, placed by the rule,
default best-fit). :func:`summarise` gives per policy and
metric the mean, its 95% confidence interval (Student's t over the windows, each window averaged over
its seeds) and the median;
:func:`table` the markdown table, best first on the metric the reward targets.

Every run starts from an empty cluster and lasts until every job of its window has finished, so the
completion rate is 1 unless jobs could not be hosted; JCT and waiting time count every job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from optalloc.core import ProblemError
from optalloc.rl.arms import base_config
from optalloc.rl.policy import LearnedPolicy, is_learned, load, random_job_policy, random_policy
from optalloc.rl.train import read_meta
from optalloc.sim import Policy, Scenario, SimConfig, SimResult, simulate
from optalloc.sim import policy as sim_policy

#: metric -> (label, unit, whether higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "mean_jct": ("mean JCT", "h", False),
    "p95_jct": ("p95 JCT", "h", False),
    "mean_wait": ("mean wait", "h", False),
    "gpu_allocation": ("GPU allocation", "%", True),
    "completion_rate": ("completion", "%", True),
}
REWARD_METRIC = {"mean JCT": "mean_jct", "mean queueing delay": "mean_wait", "GPU allocation": "gpu_allocation"}


@dataclass(frozen=True)
class Outcome:
    """One run: ``policy`` on the window starting at job ``start``, usage seed ``seed``; the metrics
    (seconds, fractions); ``decisions`` taken by a learned selector and the ``decision_seconds`` they took
    (observation and network), the controller steps that called it (``calls``) and all the time spent
    in them (``selector_seconds``: in the job mode, finding the candidates and placing the jobs too);
    ``wall``: the run's wall time."""

    policy: str
    start: int
    seed: int
    mean_jct: float
    p95_jct: float
    mean_wait: float
    gpu_allocation: float
    completion_rate: float
    decisions: int = 0
    decision_seconds: float = 0.0
    wall: float = 0.0
    calls: int = 0
    selector_seconds: float = 0.0

    @classmethod
    def of(
        cls,
        result: SimResult,
        start: int,
        seed: int,
        decisions: int = 0,
        seconds: float = 0.0,
        calls: int = 0,
        selector_seconds: float = 0.0,
    ) -> Outcome:
        jobs = result.jobs
        finished = np.isfinite(jobs.finish)
        jct = jobs.finish[finished] - jobs.arrival[finished]
        started = np.isfinite(jobs.first_start)
        wait = jobs.first_start[started] - jobs.arrival[started]
        m = result.metrics
        return cls(
            result.policy,
            start,
            seed,
            float(jct.mean()) if len(jct) else math.nan,
            float(np.percentile(jct, 95)) if len(jct) else math.nan,
            float(wait.mean()) if len(wait) else math.nan,
            float(m.gpu_allocation),
            float(m.completion_rate),
            decisions,
            seconds,
            float(result.counters.wall_time),
            calls,
            selector_seconds,
        )


@dataclass(frozen=True)
class Summary:
    """A metric of one policy over ``n`` runs: ``mean``, the 95% interval ``low``..``high``, ``median``."""

    mean: float
    low: float
    high: float
    median: float
    n: int


def evaluate(
    scenario: Scenario,
    names: Sequence[str],
    *,
    starts: Sequence[int],
    window: int,
    seeds: Sequence[int] = (0,),
    config: SimConfig | None = None,
    budget: float = 0.5,
    progress: Callable[[str, int, int], None] | None = None,
    processes: int = 1,
    known: Mapping[tuple[str, int, int], Outcome] | None = None,
    on_run: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Simulate each policy of ``names`` on each window x seed (module docstring). ``budget``: seconds
    per re-solve of the exact simulator policies (a trained policy keeps the budget it was trained
    with). ``progress(policy, done, total)`` is called after each run. ``processes > 1`` runs the runs
    side by side in that many forked processes (the learned and exact policies, the slow ones, first);
    the outcomes come back in the serial order, and are the serial ones except where a solver's time
    budget cuts a search (the exact policies and arms, on a loaded machine). ``known``: outcomes of
    earlier runs by (policy, start, seed), returned in place of running them again (a caller's cache);
    ``on_run(outcome)`` is called after each run made here (to store it)."""
    if not names:
        raise ProblemError("policies", list(names), "is empty")
    if not starts:
        raise ProblemError("starts", list(starts), "is empty")
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ProblemError("processes", processes, "is not a positive number of processes")
    cfg = config if config is not None else SimConfig()
    for n in names:  # a bad name fails now, before any run
        if is_learned(n):
            read_meta(n.partition(":")[2])
    _MODELS.clear()  # a file may have been rewritten since the last evaluation
    episodes = {int(start): scenario.select(int(start), window) for start in starts}
    tasks = [
        _Task(episodes[int(start)], int(start), int(seed), name, budget, cfg)
        for start in starts
        for seed in seeds
        for name in names
    ]
    total = len(tasks)
    out: list[Outcome | None] = [None] * total
    done = 0

    def finished(i: int, outcome: Outcome) -> None:
        nonlocal done
        out[i] = outcome
        done += 1
        if progress is not None:
            progress(tasks[i].name, done, total)

    todo: list[int] = []
    for i, task in enumerate(tasks):
        found = (known or {}).get((task.name, task.start, task.seed))
        if found is not None:
            finished(i, replace(found, policy=task.name))
        else:
            todo.append(i)

    def ran(i: int, outcome: Outcome) -> None:
        if on_run is not None:
            on_run(outcome)
        finished(i, outcome)

    if processes == 1 or len(todo) <= 1:
        for i in todo:
            ran(i, _run(tasks[i]))
    else:
        _parallel([tasks[i] for i in todo], processes, lambda k, outcome: ran(todo[k], outcome))
    return [o for o in out if o is not None]


@dataclass(frozen=True, eq=False)
class _Task:
    """One run of :func:`evaluate`: ``name`` on ``episode`` (the window at job ``start``), usage ``seed``."""

    episode: Scenario
    start: int
    seed: int
    name: str
    budget: float
    config: SimConfig

    @property
    def slow(self) -> bool:
        """Whether the run may re-solve with a solver (learned policies, random arms, exact policies)."""
        from optalloc import heuristics

        return self.name.partition("+")[0] not in heuristics.ORDERS


# Models loaded in this process (each forked worker loads its own, after the fork).
_MODELS: dict[str, LearnedPolicy] = {}


def _run(task: _Task) -> Outcome:
    episode = task.episode
    durations = [j.duration for j in episode.jobs if j.duration is not None]
    if is_learned(task.name) and task.name not in _MODELS:
        _MODELS[task.name] = load(task.name.partition(":")[2])
    chosen = _policy(task.name, _MODELS, seed=task.seed, budget=task.budget, durations=durations)
    result = simulate(episode, chosen, replace(task.config, seed=task.seed))
    selector = chosen.config.selector
    return Outcome.of(
        result,
        task.start,
        task.seed,
        int(getattr(selector, "decisions", 0)),
        float(getattr(selector, "inference", 0.0)),
        int(getattr(selector, "calls", 0)),
        float(getattr(selector, "seconds", 0.0)),
    )


# The runs of the evaluation in progress, inherited by the forked workers: only an index travels.
_FORKED: list[_Task] = []


def _run_forked(i: int) -> Outcome:
    try:
        import torch

        torch.set_num_threads(1)  # one process per core: no thread pool fighting the other workers
    except ImportError:  # pragma: no cover - the rl extra brings torch
        pass
    return _run(_FORKED[i])


def _parallel(tasks: list[_Task], processes: int, finished: Callable[[int, Outcome], None]) -> None:
    import multiprocessing as mp

    _FORKED[:] = tasks
    order = sorted(range(len(tasks)), key=lambda i: not tasks[i].slow)  # slow ones first: balanced ends
    pool = mp.get_context("fork").Pool(min(processes, len(tasks)))
    pending = {i: pool.apply_async(_run_forked, (i,)) for i in order}
    try:
        while pending:
            ready = [i for i, r in pending.items() if r.ready()]
            if not ready:
                next(iter(pending.values())).wait(0.05)
                continue
            for i in ready:
                finished(i, pending.pop(i).get())  # re-raises a run's exception here
    finally:
        if pending:
            pool.terminate()
        else:
            pool.close()
        pool.join()
        _FORKED.clear()


def _policy(
    name: str, learned: dict[str, LearnedPolicy], *, seed: int, budget: float, durations: list[float]
) -> Policy:
    if name in learned:
        model = learned[name]
        config = replace(base_config(seed), selector=model.selector(seed=seed))
        return Policy(name, config, f"learned {model.algo.upper()} policy", "learned")
    if name == "random-job" or name.startswith("random-job:"):
        found = random_job_policy(name.partition(":")[2] or "best-fit", seed=seed)
        return replace(found, name=name)
    if name == "random" or name.startswith("random:"):
        arms = name.partition(":")[2] or "compact"
        found = random_policy(arms.split(",") if "," in arms else arms, budget=budget, seed=seed)
        return replace(found, name=name)
    return sim_policy(name, budget=budget, durations=durations, seed=seed)


def summarise(outcomes: Sequence[Outcome], metric: str) -> dict[str, Summary]:
    """Per policy (in the order they first appear): the mean of ``metric``, its 95% interval and the
    median over the windows, each window's value being its mean over the seeds (the windows are the
    independent samples; seeds only vary the usage draws)."""
    from scipy import stats

    if metric not in METRICS:
        raise ProblemError("metric", metric, f"is not one of {', '.join(METRICS)}")
    runs: dict[str, dict[int, list[float]]] = {}
    for o in outcomes:
        runs.setdefault(o.policy, {}).setdefault(o.start, []).append(getattr(o, metric))
    by = {name: [float(np.mean(v)) for v in windows.values()] for name, windows in runs.items()}
    out: dict[str, Summary] = {}
    for name, values in by.items():
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        n = len(x)
        if not n:
            out[name] = Summary(math.nan, math.nan, math.nan, math.nan, 0)
            continue
        mean = float(x.mean())
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out[name] = Summary(mean, mean - half, mean + half, float(np.median(x)), n)
    return out


def table(outcomes: Sequence[Outcome], *, target: str = "mean_jct", metrics: Sequence[str] | None = None) -> str:
    """A markdown table: one row per policy, sorted best first on ``target``; each cell the mean
    with its 95% interval, then the median."""
    chosen = list(metrics or METRICS)
    summaries = {m: summarise(outcomes, m) for m in chosen}
    higher = METRICS[target][2]
    order = sorted(
        summaries[target],
        key=lambda p: -summaries[target][p].mean if higher else summaries[target][p].mean,
    )
    head = ["policy", *(f"{METRICS[m][0]} ({METRICS[m][1]})" for m in chosen)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * len(chosen)]
    for p in order:
        cells = [f"`{p}`"]
        for m in chosen:
            s = summaries[m][p]
            scale = 100.0 if METRICS[m][1] == "%" else 1 / 3600.0
            cells.append(_cell(s, scale))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(s: Summary, scale: float) -> str:
    if not math.isfinite(s.mean):
        return "-"
    if math.isfinite(s.low):
        return f"{s.mean * scale:.2f} [{s.low * scale:.2f}, {s.high * scale:.2f}] ({s.median * scale:.2f})"
    return f"{s.mean * scale:.2f} ({s.median * scale:.2f})"
