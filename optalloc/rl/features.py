"""What the agent sees: a fixed-size vector of numbers in [0, 1] built from the controller's state.

The same function builds the observation during training (:class:`~optalloc.rl.env.AllocationEnv`) and
when a trained policy runs inside the controller step (:mod:`optalloc.rl.policy`), from a
:class:`~optalloc.adaptive.ControllerState` -- so a policy sees in production what it saw in training.
Nothing in it names a trace, a GPU model or a cluster size: the same layout describes the openb and the
Gavel clusters, so a policy trained on one can be evaluated on the other.

Layout (:meth:`Features.names` lists every entry):

- **cluster, per GPU-model slot** (``models`` slots; the cluster's GPU models sorted by GPU count, the
  smallest ones merged into the last slot): the slot's share of the cluster's GPUs; the fraction of its
  GPUs wholly free; the fraction partly used (a share level between 0 and 1000 milli); its free
  milli-GPU over its capacity;
- **cluster totals**: free GPU, CPU and memory fractions; the most wholly free GPUs on one node / 8;
- **queue**: log(1 + jobs waiting) / 7; their GPU demand over the cluster's GPUs (clipped at 4) / 4;
  mean and longest wait, as log(1 + hours) / 6;
- **running and recent utilisation**: log(1 + jobs running) / 7; the allocated GPU fraction; the mean
  estimated remaining time of the running jobs, log(1 + hours) / 6; the smoothed drift between
  observed and planned usage (the monitoring's view of utilisation; 0 before the first observation);
- **queue head**: the first ``head`` waiting jobs in queue order (arrival), 8 numbers each
  (:data:`JOB_FIELDS`): present; GPUs (whole GPUs x replicas, a share counting its fraction) / 8;
  milli per GPU / 1000; replicas / 8; wait and estimated duration as log(1 + hours) / 6; priority / 3;
  whether one replica fits a node now;
- **candidates** (job-choice mode only): the ``candidates`` jobs the agent may start now (they fit, in
  queue order), the same 8 numbers each; action ``i`` starts candidate ``i``.

Every number is clipped to [0, 1]; absent slots are zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optalloc.adaptive import ControllerState
from optalloc.core import MILLI, ClusterState, Job, ProblemError

JOB_FIELDS = ("present", "gpus", "milli_per_gpu", "replicas", "wait", "duration", "priority", "fits")
_CLUSTER_FIELDS = ("share_of_gpus", "gpus_free", "gpus_partly_used", "milli_free")
_TOTALS = ("gpu_free", "cpu_free", "memory_free", "most_free_gpus_on_a_node")
_QUEUE = ("waiting", "queued_gpu_demand", "mean_wait", "longest_wait")
_RUNNING = ("running", "gpu_allocated", "mean_remaining", "drift")
_HOURS = 3600.0


@dataclass(frozen=True)
class Features:
    """The observation's layout: ``models`` GPU-model slots, ``head`` queued jobs described one by one,
    ``candidates`` startable jobs (the job-choice mode's actions; 0 in the algorithm-choice mode)."""

    models: int = 4
    head: int = 8
    candidates: int = 0

    def __post_init__(self) -> None:
        for name, low in (("models", 1), ("head", 0), ("candidates", 0)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= 256):
                raise ProblemError(f"features.{name}", value, f"is not an integer in {low}..256")

    @property
    def size(self) -> int:
        return len(self.names())

    def names(self) -> list[str]:
        """The name of every entry of the vector, in order."""
        out = [f"model{m}.{f}" for m in range(self.models) for f in _CLUSTER_FIELDS]
        out += [f"cluster.{f}" for f in _TOTALS]
        out += [f"queue.{f}" for f in _QUEUE]
        out += [f"running.{f}" for f in _RUNNING]
        out += [f"head{k}.{f}" for k in range(self.head) for f in JOB_FIELDS]
        out += [f"candidate{k}.{f}" for k in range(self.candidates) for f in JOB_FIELDS]
        return out

    def to_dict(self) -> dict[str, int]:
        return {"models": self.models, "head": self.head, "candidates": self.candidates}


@dataclass(frozen=True, eq=False)
class FreeView:
    """What is free on each node of a state: ``gpu`` (n, G) free milli per GPU slot (-1: no such GPU),
    ``gpu_memory`` (n, G) free MiB, ``cpu``, ``memory`` (n,); ``model`` (n,) each node's model slot."""

    gpu: np.ndarray
    gpu_memory: np.ndarray
    cpu: np.ndarray
    memory: np.ndarray
    model: np.ndarray
    slots: int  # GPU-model slots

    @classmethod
    def of(cls, state: ControllerState, slots: int) -> FreeView:
        nodes = state.nodes
        n = len(nodes)
        g = max((node.gpus for node in nodes), default=0) or 1
        present = np.arange(g)[None, :] < np.array([node.gpus for node in nodes], dtype=np.int64).reshape(n, 1)
        gpu = np.where(present, MILLI, -1).astype(np.int64)
        gpu_memory = np.where(present, np.array([node.gpu_memory for node in nodes]).reshape(n, 1), 0)
        cpu = np.array([node.cpu for node in nodes], dtype=np.int64)
        memory = np.array([node.memory for node in nodes], dtype=np.int64)
        index = state.node_index
        jobs = state.jobs
        for p in state.allocation.placements:
            k = index[p.node]
            job = jobs[p.job]
            cpu[k] -= job.cpu
            memory[k] -= job.memory
            for gi in p.gpus:
                gpu[k, gi] -= p.gpu_milli
                gpu_memory[k, gi] -= job.gpu_memory
        return cls(gpu, gpu_memory, cpu, memory, model_slots(nodes, slots), slots)

    @classmethod
    def of_cluster(cls, free: ClusterState, slots: int) -> FreeView:
        """The view of a :class:`~optalloc.core.ClusterState` (a placer's, while choices are made)."""
        nodes = free.problem.nodes
        return cls(free.gpu, free.gpu_mem, free.cpu, free.memory, model_slots(nodes, slots), slots)

    def fits_one_replica(self, job: Job, allowed: np.ndarray | None = None) -> bool:
        """Whether one replica of ``job`` fits some node now (capacity and GPU models)."""
        ok = (self.cpu >= job.cpu) & (self.memory >= job.memory)
        if allowed is not None:
            ok &= allowed
        if job.gpus_used:
            usable = self.gpu >= job.per_gpu_milli
            if job.gpu_memory:
                usable &= self.gpu_memory >= job.gpu_memory
            ok &= usable.sum(axis=1) >= job.gpus_used
        return bool(ok.any())


def model_slots(nodes: Sequence, slots: int) -> np.ndarray:
    """int (n,): the GPU-model slot of each node: models by GPU count (descending, then name), the
    models beyond ``slots - 1`` sharing the last slot; CPU-only nodes -1."""
    counts: dict[str, int] = {}
    for node in nodes:
        if node.gpus:
            counts[node.gpu_model or ""] = counts.get(node.gpu_model or "", 0) + node.gpus
    ranked = sorted(counts, key=lambda m: (-counts[m], m))
    slot_of = {m: min(k, slots - 1) for k, m in enumerate(ranked)}
    return np.array([slot_of[node.gpu_model or ""] if node.gpus else -1 for node in nodes], dtype=np.int64)


def allowed_nodes(nodes: Sequence, job: Job) -> np.ndarray | None:
    """bool (n,): the nodes ``job``'s GPU-model and label constraints allow (None: every node)."""
    if not (job.gpu_models and job.gpu_demand) and not job.node_selector:
        return None
    return np.array([job.allows(node) for node in nodes], dtype=bool)


def _log_hours(seconds: float, scale: float = 6.0) -> float:
    return math.log1p(max(0.0, seconds) / _HOURS) / scale


def job_row(job: Job, wait: float, fits: bool) -> list[float]:
    """The 8 numbers of :data:`JOB_FIELDS` for one job."""
    gpus = job.replicas * (job.gpus if job.gpus else job.gpu_milli / MILLI)
    duration = _log_hours(job.duration) if job.duration is not None and math.isfinite(job.duration) else 0.0
    return [
        1.0,
        gpus / 8.0,
        job.per_gpu_milli / MILLI,
        job.replicas / 8.0,
        _log_hours(wait),
        duration,
        job.priority / 3.0,
        1.0 if fits else 0.0,
    ]


def observe(
    state: ControllerState,
    now: float,
    features: Features,
    *,
    candidates: Sequence[str] = (),
    free: FreeView | None = None,
) -> np.ndarray:
    """The observation (float32, ``features.size``) of ``state`` at ``now``.

    ``candidates``: the names of the jobs the agent may start now (job-choice mode), in action order;
    ``free``: what is free now (default: from the state's allocation; the job-choice mode passes the
    view after the starts chosen so far at this step).
    """
    view = free if free is not None else FreeView.of(state, features.models)
    out: list[float] = []
    gpu = view.gpu
    present = gpu >= 0
    whole = gpu == MILLI
    partly = present & (gpu > 0) & (gpu < MILLI)
    total_gpus = int(present.sum())
    for m in range(features.models):
        rows = view.model == m
        cap = int(present[rows].sum())
        if not cap:
            out += [0.0, 0.0, 0.0, 0.0]
            continue
        free_milli = float(np.where(present[rows], gpu[rows], 0).sum())
        out += [
            cap / total_gpus,
            float(whole[rows].sum()) / cap,
            float(partly[rows].sum()) / cap,
            free_milli / (cap * MILLI),
        ]
    capacity = state.capacity  # (n, 4): gpu milli, gpu memory, cpu, memory
    cap_cpu = float(capacity[:, 2].sum()) if len(capacity) else 0.0
    cap_mem = float(capacity[:, 3].sum()) if len(capacity) else 0.0
    free_gpu = float(np.where(present, gpu, 0).sum())
    out += [
        free_gpu / (total_gpus * MILLI) if total_gpus else 0.0,
        float(view.cpu.sum()) / cap_cpu if cap_cpu else 0.0,
        float(view.memory.sum()) / cap_mem if cap_mem else 0.0,
        float(whole.sum(axis=1).max()) / 8.0 if len(gpu) else 0.0,
    ]
    jobs = state.jobs
    queue = state.queue
    waits = [now - state.waiting_since.get(name, now) for name in queue]
    demand = sum(jobs[name].gpu_demand * jobs[name].replicas for name in queue) / MILLI
    out += [
        math.log1p(len(queue)) / 7.0,
        min(4.0, demand / total_gpus) / 4.0 if total_gpus else 0.0,
        _log_hours(sum(waits) / len(waits)) if waits else 0.0,
        _log_hours(max(waits)) if waits else 0.0,
    ]
    remaining = [r for r in state.remaining(now).values() if r is not None]
    allocated = float(state.planned[:, 0].sum()) if len(state.planned) else 0.0
    drift = state.drift.cluster
    out += [
        math.log1p(len(state.running)) / 7.0,
        allocated / (total_gpus * MILLI) if total_gpus else 0.0,
        _log_hours(sum(remaining) / len(remaining)) if remaining else 0.0,
        0.0 if not math.isfinite(drift) else drift,
    ]
    nodes = state.nodes
    for name in queue[: features.head]:
        job = jobs[name]
        fits = view.fits_one_replica(job, allowed_nodes(nodes, job))
        out += job_row(job, now - state.waiting_since.get(name, now), fits)
    out += [0.0] * (len(JOB_FIELDS) * (features.head - min(features.head, len(queue))))
    for name in candidates[: features.candidates]:
        out += job_row(jobs[name], now - state.waiting_since.get(name, now), True)
    out += [0.0] * (len(JOB_FIELDS) * (features.candidates - min(features.candidates, len(candidates))))
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)
