"""Evaluation: trained policies against the fixed ones, on windows of a trace the policy never saw.

:func:`evaluate` simulates every policy on every (window, seed) pair -- ``window`` consecutive jobs
from each of ``starts``, the usage drawn from ``seed`` -- with the same simulator settings, and returns
one :class:`Outcome` per run. Names are the simulator's (``fcfs+best-fit``, ``rolling-horizon``, ...),
trained models (``dqn:model.zip``, ``ppo:model.zip``), and ``random`` / ``random:<arms>`` (a uniformly
random arm at every decision; default the ``compact`` arms). :func:`summarise` gives per policy and
metric the mean, its 95% confidence interval (Student's t over the windows, each window averaged over
its seeds) and the median;
:func:`table` the markdown table, best first on the metric the reward targets.

Every run starts from an empty cluster and lasts until every job of its window has finished, so the
completion rate is 1 unless jobs could not be hosted; JCT and waiting time count every job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from optalloc.core import ProblemError
from optalloc.rl.arms import base_config
from optalloc.rl.policy import LearnedPolicy, is_learned, load, random_policy
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
    (seconds, fractions); ``decisions`` taken by a selector and the ``decision_seconds`` they took."""

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

    @classmethod
    def of(cls, result: SimResult, start: int, seed: int, decisions: int = 0, seconds: float = 0.0) -> Outcome:
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
) -> list[Outcome]:
    """Simulate each policy of ``names`` on each window x seed (module docstring). ``budget``: seconds
    per re-solve of the exact simulator policies (a trained policy keeps the budget it was trained
    with). ``progress(policy, done, total)`` is called after each run."""
    if not names:
        raise ProblemError("policies", list(names), "is empty")
    if not starts:
        raise ProblemError("starts", list(starts), "is empty")
    cfg = config if config is not None else SimConfig()
    learned: dict[str, LearnedPolicy] = {n: load(n.partition(":")[2]) for n in names if is_learned(n)}
    total = len(names) * len(starts) * len(seeds)
    out: list[Outcome] = []
    for start in starts:
        episode = scenario.select(int(start), window)
        durations = [j.duration for j in episode.jobs if j.duration is not None]
        for seed in seeds:
            for name in names:
                chosen = _policy(name, learned, seed=seed, budget=budget, durations=durations)
                result = simulate(episode, chosen, replace(cfg, seed=seed))
                selector = chosen.config.selector
                decisions = int(getattr(selector, "decisions", 0))
                seconds = float(getattr(selector, "seconds", 0.0))
                out.append(Outcome.of(result, int(start), int(seed), decisions, seconds))
                if progress is not None:
                    progress(name, len(out), total)
    return out


def _policy(
    name: str, learned: dict[str, LearnedPolicy], *, seed: int, budget: float, durations: list[float]
) -> Policy:
    if name in learned:
        model = learned[name]
        config = replace(base_config(seed), selector=model.selector(seed=seed))
        return Policy(name, config, f"learned {model.algo.upper()} policy", "learned")
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
