"""Right-sizing: shrink whole-GPU requests that observed usage shows are mostly idle to a GPU share.

Opt-in (``ControllerConfig.right_size``). Pure functions over frozen data: :func:`track` folds an
observation into the smoothed per-job usage, :func:`candidates` lists the jobs that qualify and the spec
each would get.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from optalloc.adaptive.monitor import Observation
from optalloc.core import Job, Node, Placement, ProblemError


@dataclass(frozen=True)
class RightSizing:
    """Opt-in right-sizing: a running job that asked for whole GPUs (one per replica) but keeps each GPU
    mostly idle is shrunk to a share of its GPU, in place, so that other jobs can share that GPU.

    A job qualifies when it is named in ``jobs`` (None: every preemptible job), asks ``gpus=1`` per
    replica, has been observed ``min_observations`` times, its smoothed busy milli per GPU times
    ``headroom``, rounded up to a multiple of ``step``, is at most ``max_share``, and its peak GPU memory
    times ``headroom`` is at most ``max_memory_fraction`` of its nodes' GPU memory (when the nodes state
    it; the job's ``gpu_memory`` is then set to that figure). ``tau``: EWMA time constant of the job
    usage, seconds. A resized job keeps its share until it completes (the plan's ``resize`` action tells
    the caller to restart it with the smaller limit, e.g. under MPS or time-slicing).
    """

    jobs: frozenset[str] | None = None
    max_share: int = 500
    headroom: float = 1.25
    step: int = 50
    max_memory_fraction: float = 0.5
    min_observations: int = 3
    tau: float = 300.0

    def __post_init__(self) -> None:
        if self.jobs is not None:
            object.__setattr__(self, "jobs", frozenset(self.jobs))
        if not (isinstance(self.max_share, int) and 1 <= self.max_share <= 999):
            raise ProblemError("right_size.max_share", self.max_share, "is not a share in 1..999 milli-GPU")
        if not (isinstance(self.step, int) and 1 <= self.step <= 999):
            raise ProblemError("right_size.step", self.step, "is not in 1..999 milli-GPU")
        if not self.headroom >= 1:
            raise ProblemError("right_size.headroom", self.headroom, "is below 1")
        if not 0 < self.max_memory_fraction <= 1:
            raise ProblemError("right_size.max_memory_fraction", self.max_memory_fraction, "is not in (0, 1]")
        if not (isinstance(self.min_observations, int) and self.min_observations >= 1):
            raise ProblemError("right_size.min_observations", self.min_observations, "is not a positive integer")
        if not self.tau > 0:
            raise ProblemError("right_size.tau", self.tau, "is not a positive number of seconds")

    def allows(self, job: Job) -> bool:
        return (self.jobs is None and job.preemptible) or (self.jobs is not None and job.name in self.jobs)


@dataclass(frozen=True)
class JobTrack:
    """Smoothed observed usage of one running job (for right-sizing): busy milli per GPU (EWMA), peak
    GPU memory MiB on one GPU, how many observations, and the time of the last."""

    gpu_per_gpu: float
    gpu_memory: float
    count: int
    time: float


@dataclass(frozen=True)
class Resize:
    """A job that qualifies: its spec now (``before``), the spec it gets (``job``), and the figures."""

    before: Job
    job: Job
    share: int
    gpu_per_gpu: float
    gpu_memory: float

    def reason(self, context: str) -> str:
        return (
            f"{context}: observed {self.gpu_per_gpu:.0f} milli-GPU and {self.gpu_memory:.0f} MiB per GPU, "
            f"asked 1000; shares {self.share} milli of its GPU now"
        )


def track(
    usage: Mapping[str, JobTrack], obs: Observation, running: frozenset[str], rs: RightSizing
) -> Mapping[str, JobTrack]:
    """``usage`` with ``obs`` folded in: EWMA of busy milli per GPU, peak GPU memory, count."""
    out = dict(usage)
    for name, ju in obs.jobs.items():
        per_gpu = ju.gpu_milli_per_gpu
        if name not in running or per_gpu is None or not math.isfinite(per_gpu):
            continue
        mem = float(ju.gpu_memory) if ju.gpu_memory is not None else math.nan
        old = out.get(name)
        if old is None:
            out[name] = JobTrack(float(per_gpu), mem, 1, obs.time)
        elif obs.time > old.time:
            alpha = 1.0 - math.exp(-(obs.time - old.time) / rs.tau)
            peak = (
                old.gpu_memory if math.isnan(mem) else (mem if math.isnan(old.gpu_memory) else max(old.gpu_memory, mem))
            )
            out[name] = JobTrack(old.gpu_per_gpu + alpha * (per_gpu - old.gpu_per_gpu), peak, old.count + 1, obs.time)
    return MappingProxyType(out)


def candidates(
    jobs: Mapping[str, Job],
    placements: Mapping[str, Sequence[Placement]],
    nodes: Mapping[str, Node],
    usage: Mapping[str, JobTrack],
    rs: RightSizing,
) -> dict[str, Resize]:
    """The running jobs that qualify for a share (see :class:`RightSizing`), with their new spec."""
    out: dict[str, Resize] = {}
    for name, tr in usage.items():
        job = jobs.get(name)
        where = placements.get(name)
        if job is None or not where or job.gpus != 1 or not rs.allows(job) or tr.count < rs.min_observations:
            continue
        if math.isnan(tr.gpu_memory):
            continue  # GPU memory never observed: sharing could run it out of memory
        share = min(999, max(rs.step, math.ceil(tr.gpu_per_gpu * rs.headroom / rs.step) * rs.step))
        if share > rs.max_share:
            continue
        need = math.ceil(tr.gpu_memory * rs.headroom)
        gpu_memory = job.gpu_memory
        mems = [nodes[p.node].gpu_memory for p in where if p.node in nodes]
        if mems and all(m > 0 for m in mems):
            if need > rs.max_memory_fraction * min(mems):
                continue
            gpu_memory = max(job.gpu_memory, need)
        out[name] = Resize(
            job, replace(job, gpus=0, gpu_milli=share, gpu_memory=gpu_memory), share, tr.gpu_per_gpu, tr.gpu_memory
        )
    return out
