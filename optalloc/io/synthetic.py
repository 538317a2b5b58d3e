"""Seeded synthetic workloads modelled on the public traces, at any scale (the embedded default).

- :func:`openb_like`: nodes in the shape proportions of the Alibaba openb node list and pods in the
  mix of ``openb_pod_list_default.csv`` (CPU-only, GPU-sharing, whole-GPU and multi-GPU pods with
  their empirical CPU, memory and share distributions), lognormal lifetimes, Poisson arrivals.
- :func:`philly_like`: the Philly GPU-count mix of Gavel's ``0e4a51`` trace on 8-GPU servers.
- :func:`demo_problem`: the small instance ``optalloc demo`` solves.
- :func:`inflate` and :func:`shuffled`: the FGD paper's evaluation protocol (ATC'23): every pod, then
  pods drawn with replacement while the GPU request stays within ``target`` x capacity, shuffled.

The same arguments and seed give an identical problem (numpy ``default_rng``; no global state).
The tables were computed once from the traces (see ``docs/formats.md``) and ship as package data
(``optalloc/io/data/*.json``, read by :mod:`optalloc.io.tables`), so that no trace file is needed at
run time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from optalloc.core import LIMITS, MILLI, Job, Node, PlacementRule, Problem, ProblemError
from optalloc.io import tables

__all__ = [
    "CPU_POD_SHAPES",
    "MULTI_GPU_POD_SHAPES",
    "NODE_SHAPES",
    "ONE_GPU_POD_SHAPES",
    "OPENB_MIX",
    "PHILLY_GPU_MIX",
    "SHARE_MILLI",
    "SHARING_POD_SHAPES",
    "demo_problem",
    "inflate",
    "lognormal_params",
    "openb_like",
    "philly_like",
    "shuffled",
    "stratified_counts",
]

# The tables were computed once from the public traces; they live in package data (optalloc/io/data:
# openb.json, philly.json, each naming its source and saying what every table holds) and are read once,
# when this module is imported.
_OPENB = tables.document("openb.json")
_PHILLY = tables.document("philly.json")

#: Node shapes of alibaba-gpu-v2023/openb_node_list_all_node.csv (1523 nodes; 27 shapes):
#: (gpu model, GPUs per node, cpu milli-cores, memory MiB, number of nodes). 1213 GPU nodes, 6212 GPUs.
NODE_SHAPES: tuple[tuple[str | None, int, int, int, int], ...] = tables.rows(
    "openb.json", "node_shapes", ("gpu_model", "gpus", "cpu_milli", "memory_mib", "count")
)

#: Pod mix of alibaba-gpu-v2023/openb_pod_list_default.csv (8152 pods): 1088 CPU-only, 6989 with one
#: GPU of which 3078 share it (gpu_milli < 1000), 75 multi-GPU. Fractions of all pods, and the
#: fraction of one-GPU pods that share.
OPENB_MIX = {
    "cpu_only": _OPENB["mix"]["cpu_only"] / _OPENB["mix"]["pods"],
    "one_gpu": _OPENB["mix"]["one_gpu"] / _OPENB["mix"]["pods"],
    "multi_gpu": _OPENB["mix"]["multi_gpu"] / _OPENB["mix"]["pods"],
    "sharing": _OPENB["mix"]["sharing"] / _OPENB["mix"]["one_gpu"],
}

#: CPU-only pods: (cpu milli-cores, memory MiB, count); the 16 most common of 25 shapes, 1078 of 1088 pods.
CPU_POD_SHAPES: tuple[tuple[int, int, int], ...] = tables.rows(
    "openb.json", "cpu_pod_shapes", ("cpu_milli", "memory_mib", "count")
)

#: GPU-sharing pods: (cpu, memory MiB, count), all 19 shapes of the 3078 pods (drawn independently of
#: the share below: the marginals are the trace's) ...
SHARING_POD_SHAPES: tuple[tuple[int, int, int], ...] = tables.rows(
    "openb.json", "sharing_pod_shapes", ("cpu_milli", "memory_mib", "count")
)
#: ... and their share of one GPU: (gpu_milli, count), all 20 values.
SHARE_MILLI: tuple[tuple[int, int], ...] = tables.rows("openb.json", "share_milli", ("gpu_milli", "count"))

#: Pods with one whole GPU: (cpu, memory MiB, count); the 22 most common of 60 shapes, 3737 of 3911 pods.
ONE_GPU_POD_SHAPES: tuple[tuple[int, int, int], ...] = tables.rows(
    "openb.json", "one_gpu_pod_shapes", ("cpu_milli", "memory_mib", "count")
)

#: Multi-GPU pods: (cpu, memory MiB, GPUs, count), all 13 shapes of the 75 pods (16x2, 15x4, 44x8).
MULTI_GPU_POD_SHAPES: tuple[tuple[int, int, int, int], ...] = tables.rows(
    "openb.json", "multi_gpu_pod_shapes", ("cpu_milli", "memory_mib", "gpus", "count")
)

#: openb default pod lifetimes (deletion - creation): median 540 s, p90 6574 s, max 1.25e7 s.
OPENB_LIFETIME = (
    float(_OPENB["lifetime"]["median"]),
    float(_OPENB["lifetime"]["p90"]),
    float(_OPENB["lifetime"]["max"]),
)

#: Gavel msr/seed=0/0e4a51.trace (Philly-derived, 1181 jobs): GPUs per job (1x436, 2x226, 4x451, 8x68),
#: mean inter-arrival 6240.6 s, and durations on V100 (total_steps / isolated throughput, with the
#: scale-factor-1 fallback): median 78219 s, p90 416560 s, max 1.85e6 s.
PHILLY_GPU_MIX: tuple[tuple[int, int], ...] = tables.rows("philly.json", "gpu_mix", ("gpus", "count"))
PHILLY_INTERARRIVAL = float(_PHILLY["interarrival"]["mean"])
PHILLY_DURATION = (
    float(_PHILLY["duration"]["median"]),
    float(_PHILLY["duration"]["p90"]),
    float(_PHILLY["duration"]["max"]),
)

_Z90 = 1.2815515655446004  # standard normal 90th percentile


def lognormal_params(median: float, p90: float) -> tuple[float, float]:
    """``(mu, sigma)`` of the lognormal with this median and 90th percentile."""
    if not 0 < median < p90:
        raise ProblemError("p90", p90, f"is not above the median {median} (both positive)")
    return math.log(median), math.log(p90 / median) / _Z90


def stratified_counts(weights: Sequence[float], total: int) -> np.ndarray:
    """int64: ``total`` split in proportion to ``weights`` (largest remainder; ties to the first)."""
    w = np.asarray(weights, dtype=np.float64)
    if total < 0 or w.sum() <= 0:
        raise ProblemError("total", total, "is not a non-negative count over positive weights")
    exact = w / w.sum() * total
    out: np.ndarray = np.floor(exact).astype(np.int64)
    short = int(total - out.sum())
    if short:
        order = np.lexsort((np.arange(len(w)), -(exact - out)))
        out[order[:short]] += 1
    return out


def _count(name: str, value: Any, limit: int) -> None:
    """A count argument: an integer from 0 to ``limit``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ProblemError(name, value, "is not a count (an integer, 0 or more)")
    if value > limit:
        raise ProblemError(name, value, f"is beyond the limit of {limit:,} (docs/limits.md)")


def openb_nodes(count: int, *, cpu_only_nodes: bool = False, prefix: str = "node") -> list[Node]:
    """``count`` nodes in the openb shape proportions (stratified: deterministic, no seed needed).

    Without ``cpu_only_nodes`` only the GPU shapes are used (the 1213-node FGD cluster).
    """
    _count("nodes", count, LIMITS.nodes)
    shapes = [s for s in NODE_SHAPES if cpu_only_nodes or s[1] > 0]
    counts = stratified_counts([s[4] for s in shapes], count)
    width = max(4, len(str(max(count - 1, 0))))
    nodes: list[Node] = []
    for (model, gpus, cpu, memory, _), k in zip(shapes, counts, strict=True):
        for _ in range(int(k)):
            nodes.append(Node(f"{prefix}-{len(nodes):0{width}d}", cpu=cpu, memory=memory, gpus=gpus, gpu_model=model))
    return nodes


def openb_like(
    *,
    nodes: int = 128,
    jobs: int | None = None,
    load: float | None = None,
    seed: int = 0,
    cpu_only_nodes: bool = False,
    cpu_only: float = OPENB_MIX["cpu_only"],
    multi_gpu: float = OPENB_MIX["multi_gpu"],
    sharing: float = OPENB_MIX["sharing"],
    utilization: float = 0.9,
    lifetime_median: float = OPENB_LIFETIME[0],
    lifetime_p90: float = OPENB_LIFETIME[1],
    max_lifetime: float = OPENB_LIFETIME[2],
) -> Problem:
    """A problem modelled on the openb default trace.

    ``nodes`` servers in the openb shape proportions (:func:`openb_nodes`). Pods: ``jobs`` of them,
    or, with ``load``, pods until their GPU request reaches ``load`` x the cluster's GPUs (the last
    pod crosses it); neither given means ``load=1.0``. Each pod is CPU-only with probability
    ``cpu_only``, multi-GPU with ``multi_gpu``, else one GPU, shared (``gpu_milli`` from the
    trace's share distribution) with probability ``sharing``; CPU and memory come from the trace's
    table for its kind. Lifetimes (``duration``, s) are lognormal with the trace's median and p90,
    capped at ``max_lifetime``; arrivals are a Poisson process whose rate keeps the expected GPU
    demand in use at ``utilization`` x capacity (Little's law). Names are ``pod-NNNNN``.
    """
    if jobs is not None and load is not None:
        raise ProblemError("load", load, "is given with jobs: give one of them")
    for name, value in (("cpu_only", cpu_only), ("multi_gpu", multi_gpu), ("sharing", sharing)):
        if not 0 <= value <= 1:
            raise ProblemError(name, value, "is not a fraction between 0 and 1")
    if cpu_only + multi_gpu > 1:
        raise ProblemError("multi_gpu", multi_gpu, f"plus cpu_only={cpu_only} is above 1")
    if utilization <= 0:
        raise ProblemError("utilization", utilization, "is not positive")
    cluster = openb_nodes(nodes, cpu_only_nodes=cpu_only_nodes)
    capacity = sum(n.gpus for n in cluster) * MILLI
    rng = np.random.default_rng(seed)
    if jobs is None:
        target = (1.0 if load is None else load) * capacity
        if target < 0:
            raise ProblemError("load", load, "is negative")
        # Draw in batches until the cumulative GPU request reaches the target.
        mean_milli = max(_mean_gpu_milli(cpu_only, multi_gpu, sharing), 1.0)
        if target / mean_milli > LIMITS.jobs:
            raise ProblemError(
                "load", load, f"needs more than {LIMITS.jobs:,} pods, the limit of jobs (docs/limits.md)"
            )
        kinds_list, total, drawn = [], 0.0, 0
        while total < target:
            batch = _draw(rng, max(64, int((target - total) / mean_milli * 1.1) + 1), cpu_only, multi_gpu, sharing)
            cum = total + np.cumsum(batch[:, 3])
            stop = int(np.searchsorted(cum, target, side="left"))
            if stop < len(batch):
                kinds_list.append(batch[: stop + 1])
                total = float(cum[stop])
                drawn += stop + 1
                break
            kinds_list.append(batch)
            total = float(cum[-1])
            drawn += len(batch)
            if mean_milli <= 1.0 and drawn > 10_000_000:  # pragma: no cover - a CPU-only mix never reaches it
                raise ProblemError("load", load, "cannot be reached by a mix without GPU pods")
        pods = np.concatenate(kinds_list) if kinds_list else np.zeros((0, 5), dtype=np.int64)
    else:
        _count("jobs", jobs, LIMITS.jobs)
        pods = _draw(rng, jobs, cpu_only, multi_gpu, sharing)
    count = len(pods)
    mu, sigma = lognormal_params(lifetime_median, lifetime_p90)
    durations = np.minimum(rng.lognormal(mu, sigma, size=count), max_lifetime)
    mean_life = min(math.exp(mu + sigma**2 / 2), max_lifetime)
    mean_milli = float(pods[:, 3].mean()) if count else 0.0
    rate = utilization * capacity / (mean_milli * mean_life) if mean_milli > 0 and capacity else 1.0 / mean_life
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=count)) if count else np.zeros(0)
    arrivals = np.round(arrivals - arrivals[0], 3) if count else arrivals
    durations = np.round(durations, 3)
    width = max(5, len(str(max(count - 1, 0))))
    job_list = [
        Job(
            f"pod-{i:0{width}d}",
            cpu=int(cpu),
            memory=int(memory),
            gpus=int(gpus),
            gpu_milli=int(share),
            arrival=float(arrivals[i]),
            duration=float(durations[i]),
        )
        for i, (cpu, memory, gpus, _milli, share) in enumerate(pods.tolist())
    ]
    return Problem(tuple(cluster), tuple(job_list))


def philly_like(
    *,
    jobs: int = 1181,
    seed: int = 0,
    nodes: int = 64,
    gpus_per_node: int = 8,
    gpu_model: str = "v100",
    mean_interarrival: float = PHILLY_INTERARRIVAL,
    duration_median: float = PHILLY_DURATION[0],
    duration_p90: float = PHILLY_DURATION[1],
    max_duration: float = PHILLY_DURATION[2],
    cpu_per_gpu: int = 4000,
    memory_per_gpu: int = 16 * 1024,
    gang: bool = False,
) -> Problem:
    """Jobs with the Philly GPU-count mix (1x436, 2x226, 4x451, 8x68 of 1181) on ``nodes`` 8-GPU servers.

    Poisson arrivals (mean inter-arrival ``mean_interarrival`` s, first at 0), lognormal durations
    fitted to the Gavel 0e4a51 trace on V100 (median and p90, capped at ``max_duration``). Each job
    asks ``gpus`` whole GPUs on one node with ``cpu_per_gpu`` milli-cores and ``memory_per_gpu`` MiB
    per GPU (``gang=True``: that many one-GPU replicas, a gang preferring to pack). Servers are
    those of :func:`optalloc.io.gavel.gavel_cluster` (8 cores and 64 GiB per GPU). Names are
    ``job-NNNNN``.
    """
    from optalloc.io.gavel import gavel_cluster

    _count("jobs", jobs, LIMITS.jobs)
    if mean_interarrival <= 0:
        raise ProblemError("mean_interarrival", mean_interarrival, "is not positive")
    rng = np.random.default_rng(seed)
    sizes = np.array([g for g, _ in PHILLY_GPU_MIX], dtype=np.int64)
    p = np.array([c for _, c in PHILLY_GPU_MIX], dtype=np.float64)
    gpus = rng.choice(sizes, size=jobs, p=p / p.sum())
    gaps = rng.exponential(mean_interarrival, size=jobs)
    arrivals = np.round(np.cumsum(gaps) - gaps[0], 3) if jobs else np.zeros(0)
    mu, sigma = lognormal_params(duration_median, duration_p90)
    durations = np.round(np.minimum(rng.lognormal(mu, sigma, size=jobs), max_duration), 3)
    width = max(5, len(str(max(jobs - 1, 0))))
    job_list = []
    for i, g in enumerate(gpus.tolist()):
        per = 1 if gang else g
        job_list.append(
            Job(
                f"job-{i:0{width}d}",
                cpu=cpu_per_gpu * per,
                memory=memory_per_gpu * per,
                gpus=per,
                replicas=g if gang else 1,
                arrival=float(arrivals[i]),
                duration=float(durations[i]),
                placement=PlacementRule.PACK if gang and g > 1 else PlacementRule.ANY,
            )
        )
    cluster = gavel_cluster({gpu_model: nodes * gpus_per_node}, gpus_per_node=gpus_per_node)
    return Problem(tuple(cluster), tuple(job_list))


def demo_problem(seed: int = 0) -> Problem:
    """The embedded default of ``optalloc demo``: 64 openb-shaped GPU nodes, pods up to 95% of their GPUs.

    A few hundred pods of every kind (CPU-only, shared, whole and multi-GPU) on heterogeneous
    servers: small enough for the exact engines to solve in seconds, tight enough that placement
    matters.
    """
    return openb_like(nodes=64, load=0.95, seed=seed)


def inflate(jobs: Sequence[Job], *, capacity_gpu_milli: int, target: float = 1.3, seed: int = 0) -> list[Job]:
    """The FGD inflation: every job, then jobs drawn with replacement while the GPU request stays <= target.

    The GPU request is ``gpu_demand x replicas`` (milli-GPU). Drawing stops at the first job that
    would take the total above ``target x capacity_gpu_milli``. A copy is named ``<name>#<k>``
    (``k`` = 2, 3, ... per original), so names stay unique. Same seed, same list.
    """
    if capacity_gpu_milli < 0:
        raise ProblemError("capacity_gpu_milli", capacity_gpu_milli, "is negative")
    if target < 0:
        raise ProblemError("target", target, "is negative")
    out = list(jobs)
    demand = np.array([j.gpu_demand * j.replicas for j in out], dtype=np.int64)
    limit = target * capacity_gpu_milli
    total = int(demand.sum())
    if not out or total > limit or not demand.any():
        return out
    rng = np.random.default_rng(seed)
    copies: Counter[int] = Counter()
    picks: list[int] = []
    while True:
        batch = rng.integers(0, len(out), size=max(64, int((limit - total) / max(demand.mean(), 1)) + 16))
        cum = total + np.cumsum(demand[batch])
        over = np.flatnonzero(cum > limit)
        if len(over):
            picks.extend(batch[: over[0]].tolist())
            break
        picks.extend(batch.tolist())
        total = int(cum[-1])
    taken = {j.name for j in out}
    for i in picks:
        copies[i] += 1
        base = out[i].name
        k = copies[i] + 1
        name = f"{base}#{k}"
        while name in taken:  # an input that already holds such a name
            k += 1
            copies[i] += 1
            name = f"{base}#{k}"
        taken.add(name)
        out.append(replace(out[i], name=name))
    return out


def shuffled(jobs: Sequence[Job], seed: int = 0) -> list[Job]:
    """``jobs`` in a random order drawn from ``seed`` (numpy ``default_rng``)."""
    order = np.random.default_rng(seed).permutation(len(jobs))
    return [jobs[i] for i in order]


# Internals -----------------------------------------------------------------------------------
def _table(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    data = np.array([r[:-1] for r in rows], dtype=np.int64)
    weight = np.array([r[-1] for r in rows], dtype=np.float64)
    return data, weight / weight.sum()


def _mean_gpu_milli(cpu_only: float, multi_gpu: float, sharing: float) -> float:
    share_vals, share_p = _table(SHARE_MILLI)
    multi, multi_p = _table(MULTI_GPU_POD_SHAPES)
    one = (1 - cpu_only - multi_gpu) * ((1 - sharing) * MILLI + sharing * float(share_vals[:, 0] @ share_p))
    return one + multi_gpu * float(multi[:, 2] @ multi_p) * MILLI


def _draw(rng: np.random.Generator, count: int, cpu_only: float, multi_gpu: float, sharing: float) -> np.ndarray:
    """int64 (count, 5): cpu, memory, whole gpus, GPU request in milli, share (milli of one GPU)."""
    out = np.zeros((count, 5), dtype=np.int64)
    u = rng.random(count)
    kind = np.where(u < cpu_only, 0, np.where(u < cpu_only + multi_gpu, 3, 1))
    shared = rng.random(count) < sharing
    kind[(kind == 1) & shared] = 2
    # kind: 0 CPU-only, 1 one whole GPU, 2 a share of one GPU, 3 several GPUs
    for k, rows in ((0, CPU_POD_SHAPES), (1, ONE_GPU_POD_SHAPES), (2, SHARING_POD_SHAPES), (3, MULTI_GPU_POD_SHAPES)):
        idx = np.flatnonzero(kind == k)
        data, p = _table(rows)
        pick = data[rng.choice(len(data), size=len(idx), p=p)]
        out[idx, 0] = pick[:, 0]
        out[idx, 1] = pick[:, 1]
        if k == 1:
            out[idx, 2] = 1
        elif k == 3:
            out[idx, 2] = pick[:, 2]
    share_idx = np.flatnonzero(kind == 2)
    values, p = _table(SHARE_MILLI)
    out[share_idx, 4] = values[rng.choice(len(values), size=len(share_idx), p=p), 0]
    out[:, 3] = out[:, 2] * MILLI + out[:, 4]
    return out
