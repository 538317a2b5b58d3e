"""Workloads for the simulator: a cluster, the jobs as submitted, and how long each really runs.

A :class:`Scenario` separates what the controller is told from what happens:

- ``jobs``: the :class:`~optalloc.core.Job` objects the controller sees when they arrive (``arrival`` is
  the submission time in seconds, ``duration`` the *estimate* it may plan with, or None);
- ``runtime``: float64 (jobs, columns), the seconds each job really runs on a node of each GPU model
  (``inf``: it cannot run there); column ``"*"`` stands for every model not listed (and CPU-only nodes).

Builders:

- :func:`gavel_scenario`: a Gavel trace (Philly-derived, OSDI'20) on a heterogeneous Gavel cluster; the
  runtime on GPU type ``w`` is ``total_steps / throughput[w][(job_type, scale_factor)]`` (the 1-GPU
  throughput when the pair has no entry, as the trace README says); jobs that cannot run on a type
  (throughput 0) are restricted to the others through ``gpu_models``. The estimate is the runtime on
  one reference type (``estimate``, default ``v100``).
- :func:`openb_scenario`: the Alibaba openb pod list (ATC'23) replayed under load: the pods created in
  the trace's 34-day window (``creation_time >= start``), their inter-arrival times divided by
  ``compress``, their lifetime ``deletion_time - creation_time`` as runtime and as estimate, on a
  stratified sample of the GPU node shapes (:func:`optalloc.io.synthetic.openb_nodes`).
- :meth:`Scenario.from_problem`: any problem whose jobs state a duration (tests, synthetic workloads).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from optalloc.core import Job, Node, Problem, ProblemError

log = logging.getLogger(__name__)

ANY_MODEL = "*"

# The openb window: every deletion_time of openb_pod_list_default.csv falls in 9,964,972 ... 12,902,960 s.
OPENB_WINDOW_START = 9_964_972.0
# qos classes of the openb pod lists, as priorities (``qos_priority=True``): latency-sensitive first.
OPENB_QOS_PRIORITY: Mapping[str, int] = {"LS": 2, "Guaranteed": 1, "Burstable": 1, "BE": 0}


@dataclass(frozen=True, eq=False)
class Scenario:
    """A replayable workload (see the module docstring for the meaning of each field).

    ``models``: the column names of ``runtime``. ``description``: one line for reports (how it was
    built). ``dropped``: jobs of the source left out, and why (e.g. no GPU type of the cluster runs them).
    """

    name: str
    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]
    runtime: np.ndarray
    models: tuple[str, ...] = (ANY_MODEL,)
    description: str = ""
    dropped: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "nodes", tuple(self.nodes))
        _set(self, "jobs", tuple(self.jobs))
        _set(self, "models", tuple(self.models))
        runtime = np.asarray(self.runtime, dtype=np.float64)
        if runtime.ndim == 1:
            runtime = runtime[:, None]
        if runtime.shape != (len(self.jobs), len(self.models)):
            raise ProblemError(
                "runtime", runtime.shape, f"is not (jobs, models) = ({len(self.jobs)}, {len(self.models)})"
            )
        if len(set(self.models)) != len(self.models):
            raise ProblemError("models", self.models, "has duplicates")
        bad = np.flatnonzero(np.isnan(runtime).any(axis=1) | (runtime < 0).any(axis=1))
        if len(bad):
            i = int(bad[0])
            raise ProblemError(f"runtime[{i}]", runtime[i].tolist(), "is not a list of seconds >= 0")
        runtime.setflags(write=False)
        _set(self, "runtime", runtime)
        self.problem  # noqa: B018 - validates names, models and every job against the nodes now

    @classmethod
    def from_problem(cls, problem: Problem, name: str = "problem", *, description: str = "") -> Scenario:
        """Every job of ``problem`` runs exactly its ``duration`` (also its estimate), on any node."""
        runtime = np.empty(len(problem.jobs), dtype=np.float64)
        for i, job in enumerate(problem.jobs):
            if job.duration is None:
                raise ProblemError(
                    f"jobs[{i}].duration", None, "is unknown: the simulator needs how long each job runs"
                )
            runtime[i] = job.duration
        return cls(name, problem.nodes, problem.jobs, runtime, (ANY_MODEL,), description or f"{name}: from a problem")

    # Views ------------------------------------------------------------------------------------
    @cached_property
    def problem(self) -> Problem:
        """Every node and job in one problem (validates the scenario; gives the numpy views)."""
        catalogue = frozenset().union(*(j.gpu_models for j in self.jobs)) if self.jobs else frozenset()
        return Problem(self.nodes, self.jobs, gpu_models=catalogue)

    @cached_property
    def job_index(self) -> dict[str, int]:
        return {j.name: i for i, j in enumerate(self.jobs)}

    @cached_property
    def node_column(self) -> np.ndarray:
        """int64 (nodes,): the ``runtime`` column of each node (its model's, else ``"*"``, else -1)."""
        lookup = {m: k for k, m in enumerate(self.models)}
        fallback = lookup.get(ANY_MODEL, -1)
        return np.array([lookup.get(n.gpu_model or "", fallback) for n in self.nodes], dtype=np.int64)

    @cached_property
    def hostable(self) -> np.ndarray:
        """bool (jobs,): whether each job fits the empty cluster (all nodes up) and can run there."""
        problem = self.problem
        memo: dict[tuple[Any, ...], bool] = {}
        out = np.zeros(len(self.jobs), dtype=bool)
        for i, job in enumerate(self.jobs):
            key = job.demand_key
            if key not in memo:
                memo[key] = problem.hostable(i)
            out[i] = memo[key]
        return out

    def runtime_on(self, job: int, nodes: Iterable[int]) -> float:
        """Seconds job index ``job`` runs on node indices ``nodes``: the slowest of them (a gang advances
        at the pace of its slowest replica); ``inf`` when one of them cannot run it."""
        cols = self.node_column
        worst = 0.0
        for n in nodes:
            c = int(cols[n])
            value = math.inf if c < 0 else float(self.runtime[job, c])
            worst = max(worst, value)
        return worst

    @property
    def span(self) -> float:
        """Seconds from the first to the last arrival."""
        if not self.jobs:
            return 0.0
        arrivals = self.problem.job_arrival
        return float(arrivals.max() - arrivals.min())

    def offered_load(self, column: str | None = None) -> float:
        """Mean GPUs busy if every job ran on ``column``'s model (default: the first) for its runtime,
        over the arrival span, divided by the cluster's GPUs: above 1, a queue must build up."""
        k = 0 if column is None else self.models.index(column)
        gpus = self.problem.demand[:, 2] * self.problem.job_replicas / 1000.0
        run = self.runtime[:, k]
        finite = np.isfinite(run)
        capacity = float(self.problem.node_gpus.sum())
        span = self.span
        if not capacity or not span:
            return math.inf
        return float((gpus[finite] * run[finite]).sum() / span / capacity)

    def head(self, count: int) -> Scenario:
        """The first ``count`` jobs by arrival (for quick runs and tests)."""
        return self.select(0, count)

    def select(self, first: int = 0, count: int | None = None) -> Scenario:
        """Jobs ``first .. first + count - 1`` in arrival order (a slice of the trace; arrivals unchanged)."""
        order = np.argsort(self.problem.job_arrival, kind="stable")
        stop = len(order) if count is None else first + max(0, count)
        chosen = np.sort(order[max(0, first) : stop])
        label = f"jobs {first}..{first + len(chosen) - 1} by arrival" if first else f"first {len(chosen)} jobs"
        return replace(
            self,
            jobs=tuple(self.jobs[i] for i in chosen),
            runtime=self.runtime[chosen],
            description=f"{self.description} ({label})",
        )

    def describe(self) -> dict[str, Any]:
        d = self.problem.describe()
        return {
            "name": self.name,
            "description": self.description,
            "nodes": d["nodes"],
            "gpus": d["gpus"],
            "jobs": d["jobs"],
            "span_s": round(self.span, 3),
            "models": list(self.models),
            "dropped": len(self.dropped),
        }


# Gavel ----------------------------------------------------------------------------------------


def gavel_scenario(
    trace: str | Path,
    throughputs: str | Path | Any,
    counts: Mapping[str, int],
    *,
    gpus_per_node: int = 8,
    estimate: str = "v100",
    gang: bool = False,
    name: str | None = None,
) -> Scenario:
    """A Gavel trace on a Gavel cluster of ``counts`` GPUs per type (``{"v100": 32, "p100": 32, "k80": 32}``).

    ``throughputs``: the path of ``simulation_throughputs.json`` or a
    :class:`~optalloc.io.gavel.Throughputs`. ``estimate``: the worker type whose runtime the controller
    gets as the job's ``duration`` (``"min"`` / ``"max"``: the fastest / slowest type of the cluster;
    ``"none"``: no estimate). ``gang``: a k-GPU job is k one-GPU replicas (see
    :func:`optalloc.io.gavel.load_trace`).
    """
    from optalloc.io import gavel

    tp = throughputs if isinstance(throughputs, gavel.Throughputs) else gavel.read_throughputs(throughputs)
    models = tuple(counts)
    if not models:
        raise ProblemError("counts", dict(counts), "names no GPU type")
    for m in models:
        if m not in tp.worker_types:
            known = ", ".join(tp.worker_types)
            raise ProblemError("cluster", m, f"is not a worker type of {tp.source} (known: {known})")
    loaded = gavel.load_trace(trace, gang=gang)
    runtime = np.stack([loaded.durations(tp, m) for m in models], axis=1)  # (jobs, types)
    if estimate in ("min", "max", "none"):
        finite = np.where(np.isfinite(runtime), runtime, np.nan)
        with np.errstate(all="ignore"):
            est = np.nanmin(finite, axis=1) if estimate == "min" else np.nanmax(finite, axis=1)
    else:
        if estimate not in tp.worker_types:
            raise ProblemError("estimate", estimate, f"is not min, max, none or a worker type ({tp.worker_types})")
        est = runtime[:, models.index(estimate)] if estimate in models else loaded.durations(tp, estimate)
    jobs: list[Job] = []
    keep: list[int] = []
    dropped: dict[str, str] = {}
    for i, job in enumerate(loaded.jobs):
        runs = np.isfinite(runtime[i])
        if not runs.any():
            dropped[job.name] = f"no GPU type of the cluster runs it ({', '.join(models)}: throughput 0)"
            continue
        allowed = frozenset(m for m, ok in zip(models, runs, strict=True) if ok) if not runs.all() else frozenset()
        duration = None if estimate == "none" or not math.isfinite(est[i]) else float(est[i])
        jobs.append(replace(job, duration=duration, gpu_models=allowed))
        keep.append(i)
    if dropped:
        log.warning("%d jobs of %s run on no GPU type of the cluster; left out", len(dropped), loaded.source)
    nodes = gavel.gavel_cluster(dict(counts), gpus_per_node=gpus_per_node)
    label = ", ".join(f"{c} {m}" for m, c in counts.items())
    return Scenario(
        name or f"gavel-{Path(trace).stem}",
        tuple(nodes),
        tuple(jobs),
        runtime[keep],
        models,
        f"Gavel {loaded.source} ({len(jobs)} jobs) on {label} GPUs, {gpus_per_node} per server; "
        f"runtime = total_steps / throughput on the GPU type the job runs on; estimate = {estimate}",
        dropped,
    )


# openb ----------------------------------------------------------------------------------------


def openb_scenario(
    pods: str | Path,
    *,
    nodes: int | Sequence[Node] = 24,
    compress: float = 1.0,
    start: float | None = OPENB_WINDOW_START,
    qos_priority: bool = False,
    name: str | None = None,
) -> Scenario:
    """The openb pod list ``pods`` replayed under load.

    ``nodes``: a count of nodes drawn in the openb GPU-shape proportions (stratified, deterministic:
    :func:`optalloc.io.synthetic.openb_nodes`), or the nodes themselves. Pods created before ``start``
    (default: the start of the trace's 34-day window; None keeps every pod) are left out: they are
    long-running services created up to 115 days earlier. Arrival = ``(creation_time - start) /
    compress`` seconds; runtime = estimate = ``deletion_time - creation_time``. ``qos_priority`` maps
    the ``qos`` column to priorities (LS 2, Guaranteed and Burstable 1, BE 0; otherwise all 0).
    """
    from optalloc.io import openb, synthetic

    if not (isinstance(compress, int | float) and compress > 0):
        raise ProblemError("compress", compress, "is not a positive factor")
    path = Path(pods)
    all_pods = openb.read_pods(path)
    if any(j.duration is None for j in all_pods):
        raise ProblemError(str(path), path.name, "has no creation_time/deletion_time: it cannot be replayed")
    qos = _qos(path) if qos_priority else {}
    first = min(j.arrival for j in all_pods) if all_pods else 0.0
    t0 = first if start is None else float(start)
    jobs: list[Job] = []
    runtime: list[float] = []
    dropped: dict[str, str] = {}
    for job in all_pods:
        if job.arrival < t0:
            dropped[job.name] = f"created at {job.arrival:.0f} s, before the window start {t0:.0f} s"
            continue
        priority = OPENB_QOS_PRIORITY.get(qos.get(job.name, ""), 0) if qos_priority else 0
        jobs.append(replace(job, arrival=round((job.arrival - t0) / compress, 3), priority=priority))
        runtime.append(float(job.duration or 0.0))
    cluster = synthetic.openb_nodes(nodes) if isinstance(nodes, int) else list(nodes)
    gpus = sum(n.gpus for n in cluster)
    return Scenario(
        name or f"openb-{path.stem.removeprefix('openb_pod_list_')}",
        tuple(cluster),
        tuple(jobs),
        np.array(runtime, dtype=np.float64),
        (ANY_MODEL,),
        f"openb {path.name}: {len(jobs)} pods created from {t0:.0f} s, inter-arrivals / {compress:g}, "
        f"runtime = deletion - creation; {len(cluster)} nodes ({gpus} GPUs) in the openb shape mix",
        dropped,
    )


def _qos(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "qos" not in reader.fieldnames:
            raise ProblemError(f"{path.name}: qos", None, "is not a column of this pod list")
        return {row["name"].strip(): (row.get("qos") or "").strip() for row in reader}


# Cluster specs --------------------------------------------------------------------------------


def parse_counts(spec: str | Iterable[str]) -> dict[str, int]:
    """``"v100=32,p100=32"`` (or a list of ``TYPE=GPUS`` items) -> ``{"v100": 32, "p100": 32}``."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, int] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.strip().isdigit() or not value.strip().isascii() or not key.strip():
                raise ProblemError("cluster", part, "is not TYPE=GPUS (e.g. v100=32)")
            if key.strip() in out:
                raise ProblemError("cluster", part, f"names {key.strip()} again (give each GPU type once)")
            if len(value.strip()) > 12:  # more GPUs than any limit allows: never convert a huge number
                raise ProblemError("cluster", part, "asks for more GPUs than the limits allow (docs/limits.md)")
            out[key.strip()] = int(value)
    if not out:
        raise ProblemError("cluster", spec, "names no GPU type")
    return out
