"""What a simulated run is worth: job completion times, queueing, utilisation, fragmentation, cost.

Inputs are plain arrays (a :class:`JobTable` per job, a :class:`Timeline` of cluster samples), so the
definitions can be checked on hand-made timelines; :func:`compute` turns them into :class:`Metrics`.
docs/simulator.md states every definition and the paper it follows:

- **JCT** (job completion time) = finish - arrival (submission), over the jobs that finished, seconds:
  mean, median (p50) and 99th percentile (linear interpolation) -- Gu et al., Tiresias, NSDI'19 and
  Narayanan et al., Gavel, OSDI'20.
- **Queueing delay** = first start - arrival, over the jobs that started (Tiresias).
- **Makespan** = last finish - first arrival (Gavel); when jobs remain unfinished, the end of the run.
- **GPU allocation ratio** = allocated GPUs / GPUs of the nodes up (Weng et al., "Beware of
  Fragmentation", ATC'23), time-weighted: integral of allocated over integral of capacity.
- **Utilisation** (the first of the three indicators) = used / available, time-weighted the same way,
  "used" being the observed usage of the running jobs (profiles), per resource.
- **Fragmentation**: the FGD measure (expected milli-GPU unusable by the target workload, ATC'23),
  time-averaged, in GPUs; its ratio to the free GPUs.
- **Waiting ratio** = waiting jobs / running jobs, as the ratio of their time averages.
- **Completion rate** = finished / submitted, at the end of the run.
- **Unplaceable** = jobs that fit no node of the cluster (rejected at arrival) plus jobs that never
  started by the end.

Every time average is over ``[start, end]``: a sample ``k`` holds from ``time[k]`` until ``time[k+1]``
(the last one until ``end``), a left-continuous step function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from optalloc.core import ProblemError

GPU, CPU, MEMORY = 0, 1, 2


@dataclass(frozen=True, eq=False)
class JobTable:
    """Per job (aligned arrays): ``arrival``, ``first_start`` and ``finish`` seconds (NaN: not yet),
    ``gpus`` requested (all replicas, in GPUs; a share counts its fraction), ``preemptions`` and
    ``migrations`` caused by the policy, ``failures`` (restarts after a node was lost), ``rejected``
    (fit no node of the cluster)."""

    names: tuple[str, ...]
    arrival: np.ndarray
    first_start: np.ndarray
    finish: np.ndarray
    gpus: np.ndarray
    preemptions: np.ndarray
    migrations: np.ndarray
    failures: np.ndarray
    rejected: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.names)
        for name in ("arrival", "first_start", "finish", "gpus"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ("preemptions", "migrations", "failures"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        object.__setattr__(self, "rejected", np.asarray(self.rejected, dtype=bool))
        for name in ("arrival", "first_start", "finish", "gpus", "preemptions", "migrations", "failures", "rejected"):
            if getattr(self, name).shape != (m,):
                raise ProblemError(f"jobs.{name}", getattr(self, name).shape, f"is not ({m},)")

    @classmethod
    def of(
        cls,
        arrival: Any,
        first_start: Any,
        finish: Any,
        *,
        gpus: Any = None,
        names: Any = None,
    ) -> JobTable:
        """A table from arrival / first start / finish lists (other columns zero): for hand-made tests."""
        a = np.asarray(arrival, dtype=np.float64)
        m = len(a)
        zeros = np.zeros(m, dtype=np.int64)
        return cls(
            tuple(names) if names is not None else tuple(f"job-{i}" for i in range(m)),
            a,
            np.asarray(first_start, dtype=np.float64),
            np.asarray(finish, dtype=np.float64),
            np.ones(m) if gpus is None else np.asarray(gpus, dtype=np.float64),
            zeros,
            zeros.copy(),
            zeros.copy(),
            np.zeros(m, dtype=bool),
        )

    @property
    def jct(self) -> np.ndarray:
        """float64 (finished jobs,): completion times, seconds."""
        done = ~np.isnan(self.finish)
        out: np.ndarray = self.finish[done] - self.arrival[done]
        return out

    @property
    def queueing_delay(self) -> np.ndarray:
        """float64 (started jobs,): first start - arrival, seconds."""
        started = ~np.isnan(self.first_start)
        out: np.ndarray = self.first_start[started] - self.arrival[started]
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per job (for CSV / JSON)."""
        rows = []
        for i, name in enumerate(self.names):
            rows.append(
                {
                    "job": name,
                    "arrival": float(self.arrival[i]),
                    "first_start": _num(self.first_start[i]),
                    "finish": _num(self.finish[i]),
                    "jct": _num(self.finish[i] - self.arrival[i]),
                    "queueing_delay": _num(self.first_start[i] - self.arrival[i]),
                    "gpus": float(self.gpus[i]),
                    "preemptions": int(self.preemptions[i]),
                    "migrations": int(self.migrations[i]),
                    "failures": int(self.failures[i]),
                    "rejected": bool(self.rejected[i]),
                }
            )
        return rows


@dataclass(frozen=True, eq=False)
class Timeline:
    """Samples of the cluster: sample ``k`` describes ``[time[k], time[k+1])``, the last ``[time[-1], end)``.

    ``capacity``, ``allocated``, ``used``: (k, 3) GPU milli, CPU milli-cores, memory MiB of the nodes up,
    requested by the running jobs, and observed in use. ``waiting`` / ``running``: job counts.
    ``fragmentation``: FGD milli-GPU.
    """

    time: np.ndarray
    capacity: np.ndarray
    allocated: np.ndarray
    used: np.ndarray
    waiting: np.ndarray
    running: np.ndarray
    fragmentation: np.ndarray
    end: float

    def __post_init__(self) -> None:
        k = len(np.asarray(self.time))
        object.__setattr__(self, "time", np.asarray(self.time, dtype=np.float64))
        for name in ("capacity", "allocated", "used"):
            value = np.asarray(getattr(self, name), dtype=np.float64).reshape(k, 3)
            object.__setattr__(self, name, value)
        for name in ("waiting", "running", "fragmentation"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim != 1 or len(value) != k:
                raise ProblemError(f"timeline.{name}", value.shape, f"is not ({k},)")
            object.__setattr__(self, name, value)
        if k and np.any(np.diff(self.time) < 0):
            raise ProblemError("timeline.time", "unsorted", "is not in increasing order")
        if k and self.end < self.time[-1]:
            raise ProblemError("timeline.end", self.end, f"is before the last sample at {self.time[-1]}")

    @classmethod
    def of(
        cls,
        time: Any,
        *,
        end: float,
        gpu_capacity: Any,
        gpu_allocated: Any,
        gpu_used: Any = None,
        waiting: Any = None,
        running: Any = None,
        fragmentation: Any = None,
    ) -> Timeline:
        """A GPU-only timeline (CPU and memory zero), for hand-made tests."""
        t = np.asarray(time, dtype=np.float64)
        k = len(t)

        def col(values: Any) -> np.ndarray:
            out = np.zeros((k, 3))
            if values is not None:
                out[:, GPU] = np.broadcast_to(np.asarray(values, dtype=np.float64), (k,))
            return out

        zeros = np.zeros(k)
        return cls(
            t,
            col(gpu_capacity),
            col(gpu_allocated),
            col(gpu_used if gpu_used is not None else gpu_allocated),
            zeros if waiting is None else np.asarray(waiting, dtype=np.float64),
            zeros if running is None else np.asarray(running, dtype=np.float64),
            zeros if fragmentation is None else np.asarray(fragmentation, dtype=np.float64),
            float(end),
        )

    def __len__(self) -> int:
        return len(self.time)

    def weights(self, start: float, end: float) -> np.ndarray:
        """float64 (k,): seconds each sample covers within ``[start, end]``."""
        if not len(self.time):
            return np.zeros(0)
        upper = np.append(self.time[1:], max(self.end, self.time[-1]))
        lo = np.maximum(self.time, start)
        hi = np.minimum(upper, end)
        out: np.ndarray = np.maximum(hi - lo, 0.0)
        return out

    def mean(self, values: np.ndarray, start: float, end: float) -> float:
        """Time-weighted mean of ``values`` (aligned with the samples) over ``[start, end]``."""
        w = self.weights(start, end)
        total = float(w.sum())
        # np.sum of products, not a BLAS dot: the same figure whatever the thread count of the process
        return float(np.sum(w * values)) / total if total > 0 else math.nan

    def ratio(self, numerator: np.ndarray, denominator: np.ndarray, start: float, end: float) -> float:
        """Integral of ``numerator`` over integral of ``denominator`` within ``[start, end]`` (NaN if 0)."""
        w = self.weights(start, end)
        below = float(np.sum(w * denominator))
        return float(np.sum(w * numerator)) / below if below > 0 else math.nan


@dataclass(frozen=True)
class Counters:
    """What the simulator counted: events by kind, controller steps and their cost (seconds of wall time).

    ``fallbacks``: steps where the fallback heuristic stood in for the policy's method (``Plan.fallback``);
    ``fallback_reasons``: the same by reason (``no-answer``, ``infeasible``, ``unavailable``). ``errors``:
    steps whose plan reports an error (a window the cluster cannot describe).
    """

    arrivals: int = 0
    completions: int = 0
    ticks: int = 0
    failures: int = 0
    repairs: int = 0
    steps: int = 0
    resolves: int = 0
    fallbacks: int = 0
    fallback_reasons: Mapping[str, int] = field(default_factory=dict)
    errors: int = 0
    solve_time: float = 0.0
    controller_time: float = 0.0
    wall_time: float = 0.0

    @property
    def events(self) -> int:
        """Arrivals + completions + ticks (the figure events/s is measured on), plus node events."""
        return self.arrivals + self.completions + self.ticks + self.failures + self.repairs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fallback_reasons": dict(self.fallback_reasons), "events": self.events}


@dataclass(frozen=True)
class Metrics:
    """The figures of one run (see the module docstring for each definition). Times in seconds,
    ratios in 0..1, GPUs as counts; NaN where undefined (e.g. JCT with no job finished)."""

    jobs: int
    finished: int
    rejected: int
    unfinished: int
    avg_jct: float
    p50_jct: float
    p99_jct: float
    avg_queueing_delay: float
    p50_queueing_delay: float
    p99_queueing_delay: float
    makespan: float
    gpu_allocation: float
    cpu_allocation: float
    memory_allocation: float
    gpu_utilisation: float
    cpu_utilisation: float
    memory_utilisation: float
    fragmentation: float
    fragmentation_ratio: float
    waiting_ratio: float
    avg_waiting: float
    avg_running: float
    completion_rate: float
    unplaceable: int
    preemptions: int
    migrations: int
    failure_restarts: int
    fallbacks: int
    solver_time: float
    solver_time_share: float
    solver_time_per_hour: float
    wall_time: float
    events: int
    events_per_second: float
    steps: int
    start: float
    end: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["extra"] = dict(self.extra)
        return {k: _num(v) if isinstance(v, float) else v for k, v in out.items()}


def compute(
    jobs: JobTable,
    timeline: Timeline,
    counters: Counters | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
) -> Metrics:
    """The metrics of a run over ``[start, end]`` (default: first arrival to the timeline's end).

    Jobs count when they arrived within the window; a job counts as finished when it finished by
    ``end``.
    """
    counters = counters or Counters()
    arrivals = jobs.arrival
    t0 = float(start) if start is not None else (float(arrivals.min()) if len(arrivals) else 0.0)
    t1 = float(end) if end is not None else float(timeline.end)
    if t1 < t0:
        raise ProblemError("end", t1, f"is before start={t0}")
    inside = (arrivals >= t0) & (arrivals <= t1)
    finish = np.where(jobs.finish <= t1, jobs.finish, np.nan)
    first = np.where(jobs.first_start <= t1, jobs.first_start, np.nan)
    done = inside & ~np.isnan(finish)
    started = inside & ~np.isnan(first)
    rejected = inside & jobs.rejected
    jct = finish[done] - arrivals[done]
    delay = first[started] - arrivals[started]
    submitted = int(inside.sum())
    finished = int(done.sum())
    last = float(np.nanmax(finish[inside])) if finished else math.nan
    all_done = finished + int(rejected.sum()) == submitted
    makespan = (last - t0) if (finished and all_done) else (t1 - t0)

    cap, alloc, used = timeline.capacity, timeline.allocated, timeline.used
    frag = timeline.fragmentation
    free_gpu = np.maximum(cap[:, GPU] - alloc[:, GPU], 0.0) if len(timeline) else np.zeros(0)
    avg_waiting = timeline.mean(timeline.waiting, t0, t1) if len(timeline) else math.nan
    avg_running = timeline.mean(timeline.running, t0, t1) if len(timeline) else math.nan
    span_h = (t1 - t0) / 3600.0
    wall = counters.wall_time
    return Metrics(
        jobs=submitted,
        finished=finished,
        rejected=int(rejected.sum()),
        unfinished=submitted - finished - int(rejected.sum()),
        avg_jct=_mean(jct),
        p50_jct=_pct(jct, 50),
        p99_jct=_pct(jct, 99),
        avg_queueing_delay=_mean(delay),
        p50_queueing_delay=_pct(delay, 50),
        p99_queueing_delay=_pct(delay, 99),
        makespan=float(makespan),
        gpu_allocation=timeline.ratio(alloc[:, GPU], cap[:, GPU], t0, t1) if len(timeline) else math.nan,
        cpu_allocation=timeline.ratio(alloc[:, CPU], cap[:, CPU], t0, t1) if len(timeline) else math.nan,
        memory_allocation=timeline.ratio(alloc[:, MEMORY], cap[:, MEMORY], t0, t1) if len(timeline) else math.nan,
        gpu_utilisation=timeline.ratio(used[:, GPU], cap[:, GPU], t0, t1) if len(timeline) else math.nan,
        cpu_utilisation=timeline.ratio(used[:, CPU], cap[:, CPU], t0, t1) if len(timeline) else math.nan,
        memory_utilisation=timeline.ratio(used[:, MEMORY], cap[:, MEMORY], t0, t1) if len(timeline) else math.nan,
        fragmentation=timeline.mean(frag, t0, t1) / 1000.0 if len(timeline) else math.nan,
        fragmentation_ratio=timeline.ratio(frag, free_gpu, t0, t1) if len(timeline) else math.nan,
        waiting_ratio=avg_waiting / avg_running if avg_running and avg_running > 0 else math.nan,
        avg_waiting=avg_waiting,
        avg_running=avg_running,
        completion_rate=finished / submitted if submitted else math.nan,
        unplaceable=int(rejected.sum()) + int((inside & ~jobs.rejected & np.isnan(first)).sum()),
        preemptions=int(jobs.preemptions[inside].sum()),
        migrations=int(jobs.migrations[inside].sum()),
        failure_restarts=int(jobs.failures[inside].sum()),
        fallbacks=counters.fallbacks,
        solver_time=counters.solve_time,
        solver_time_share=counters.solve_time / wall if wall > 0 else math.nan,
        solver_time_per_hour=counters.solve_time / span_h if span_h > 0 else math.nan,
        wall_time=wall,
        events=counters.events,
        events_per_second=counters.events / wall if wall > 0 else math.nan,
        steps=counters.steps,
        start=t0,
        end=t1,
    )


def binned(timeline: Timeline, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Time-average of the step function ``values`` over each interval ``[edges[i], edges[i+1])``."""
    if not len(timeline):
        return np.full(len(edges) - 1, np.nan)
    t = timeline.time
    ends = np.append(t[1:], max(timeline.end, t[-1]))
    cumulative = np.concatenate(([0.0], np.cumsum(values * (ends - t))))
    knots = np.append(t, ends[-1])
    integral = np.interp(edges, knots, cumulative)
    width = np.diff(edges)
    out: np.ndarray = np.where(width > 0, np.diff(integral) / np.where(width > 0, width, 1.0), np.nan)
    return out


def cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical CDF (for the JCT plot)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    y = np.arange(1, len(x) + 1) / len(x) if len(x) else np.zeros(0)
    return x, y


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def _num(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
