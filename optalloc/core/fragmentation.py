"""GPU fragmentation as the FGD paper defines it (Weng et al., "Beware of Fragmentation", ATC'23).

A *target workload* is a set of task classes ``m`` with popularity ``p_m`` (summing to 1). For a node
``n`` with free milli-GPU ``R_g`` on each GPU ``g``, the fragmentation seen by class ``m`` is

- all free GPU of the node, ``sum_g R_g``, when ``m`` cannot run there at all: it needs no GPU
  (a CPU-only task can use none of it), the node's GPU model is not allowed, the node lacks CPU, or
  fewer than ``gpus_m`` GPUs have ``R_g >= milli_m`` free;
- otherwise the free milli-GPU on the GPUs too full for it: ``sum_{g: R_g < milli_m} R_g``.

The node's fragmentation is ``F_n = sum_m p_m F_n(m)`` (milli-GPU) and the cluster's is ``sum_n F_n``.
This follows the upstream simulator (``NodeGpuShareFragAmountScore``): memory is not part of the
definition. Every function here is vectorised over nodes: classes that share a milli threshold share
the work (per distinct threshold, count the GPUs with that much free and sum the free milli below it
once), so a call costs about ten numpy operations whatever the number of classes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from optalloc.core.job import Job
from optalloc.core.problem import Problem


@dataclass(frozen=True)
class Workload:
    """Task classes of a target workload: per-class arrays of length k."""

    cpu: np.ndarray  # milli-cores per task
    gpus: np.ndarray  # GPUs a task touches (0, 1 for a share, or the whole-GPU count)
    milli: np.ndarray  # milli-GPU taken on each of those GPUs (0, the share, or 1000)
    models: np.ndarray  # bool (k, number of model names): allowed GPU models
    popularity: np.ndarray  # float, sums to 1

    @classmethod
    def of_jobs(cls, jobs: Iterable[Job], model_names: tuple[str, ...], *, include_cpu_only: bool = True) -> Workload:
        """Classes of identical (cpu, gpus, milli, models) tasks, weighted by how many jobs have each."""
        counts: Counter[tuple[int, int, int, tuple[str, ...]]] = Counter()
        for job in jobs:
            if not include_cpu_only and not job.gpu_demand:
                continue
            counts[(job.cpu, job.gpus_used, job.per_gpu_milli, tuple(sorted(job.gpu_models)))] += job.replicas
        keys = list(counts)
        total = sum(counts.values()) or 1
        models = np.ones((len(keys), len(model_names)), dtype=bool)
        for k, key in enumerate(keys):
            if key[3]:
                models[k] = [m in key[3] for m in model_names]
        return cls(
            np.array([k[0] for k in keys], dtype=np.int64),
            np.array([k[1] for k in keys], dtype=np.int64),
            np.array([k[2] for k in keys], dtype=np.int64),
            models,
            np.array([counts[k] / total for k in keys], dtype=np.float64),
        )

    @classmethod
    def of_problem(cls, problem: Problem, *, include_cpu_only: bool = True) -> Workload:
        return cls.of_jobs(problem.jobs, problem.model_names, include_cpu_only=include_cpu_only)

    def __len__(self) -> int:
        return len(self.popularity)


def node_fragmentation(gpu: np.ndarray, cpu: np.ndarray, model: np.ndarray, workload: Workload) -> np.ndarray:
    """Expected fragmentation (milli-GPU) of each node under ``workload``.

    ``gpu`` (..., G): free milli per GPU slot (negative for slots that do not exist); ``cpu`` (...):
    free milli-cores; ``model`` (...): index of the node's GPU model, -1 for none. Leading dimensions
    are free, so callers can score many hypothetical node states in one call. Callers that score
    often under one workload should build a :class:`FragmentationModel` once and call it.
    """
    return FragmentationModel.of(workload, workload.models.shape[1])(gpu, cpu, model)


@dataclass(frozen=True)
class FragmentationModel:
    """Evaluates the FGD fragmentation of arrays of node states under one workload.

    Build it once per workload (:meth:`of`); call it on ``gpu`` (S, G) free milli per slot (negative
    for absent slots), ``cpu`` (S,) free milli-cores and ``model`` (S,) model index (-1: none).
    """

    thresholds: np.ndarray  # (T,) distinct milli thresholds of the GPU classes, ascending
    column: np.ndarray  # (K,) threshold index of each GPU class
    cpu: np.ndarray  # (K,) milli-cores of each GPU class
    gpus: np.ndarray  # (K,) GPUs each GPU class needs
    weight: np.ndarray  # (K,) popularity of each GPU class
    access: np.ndarray  # (M + 1, K) bool: may a class use a node of model m (last row: no model)
    cpu_only_weight: float  # summed popularity of the CPU-only classes (they strand every free GPU)

    @classmethod
    def of(cls, workload: Workload, n_models: int) -> FragmentationModel:
        """The evaluator of ``workload`` for nodes whose model indices are below ``n_models``."""
        gpu_class = workload.milli > 0
        milli = workload.milli[gpu_class]
        thresholds = np.unique(milli)
        access = np.zeros((n_models + 1, int(gpu_class.sum())), dtype=bool)
        models = workload.models[gpu_class]
        if n_models:
            access[:n_models] = models.T if models.shape[1] else True
        return cls(
            thresholds=thresholds.astype(np.int64),
            column=np.searchsorted(thresholds, milli).astype(np.int64),
            cpu=workload.cpu[gpu_class].astype(np.int64),
            gpus=workload.gpus[gpu_class].astype(np.int64),
            weight=workload.popularity[gpu_class].astype(np.float64),
            access=access,
            cpu_only_weight=float(workload.popularity[~gpu_class].sum()),
        )

    def __call__(self, gpu: np.ndarray, cpu: np.ndarray, model: np.ndarray) -> np.ndarray:
        """Expected fragmentation (milli-GPU, float64) of each state: shape ``gpu.shape[:-1]``."""
        lead = gpu.shape[:-1]
        g = gpu.reshape(-1, gpu.shape[-1])
        c = cpu.reshape(-1)
        m = model.reshape(-1)
        free = np.maximum(g, 0)
        total = free.sum(axis=1).astype(np.float64)
        out = self.cpu_only_weight * total
        if self.weight.size:
            ge = g[:, :, None] >= self.thresholds[None, None, :]  # (S, G, T)
            count = ge.sum(axis=1)  # (S, T) GPUs with at least t free
            usable = (free[:, :, None] * ge).sum(axis=1)  # (S, T) free milli on those GPUs
            stranded = total[:, None] - usable[:, self.column]  # (S, K)
            ok = self.access[m] & (c[:, None] >= self.cpu[None, :]) & (count[:, self.column] >= self.gpus[None, :])
            out = out + np.where(ok, stranded, total[:, None]) @ self.weight
        return np.asarray(out).reshape(lead)


def cluster_fragmentation(
    problem: Problem, gpu: np.ndarray, cpu: np.ndarray, workload: Workload | None = None
) -> float:
    """Total expected fragmentation of the cluster (milli-GPU) in the given free state."""
    wl = Workload.of_problem(problem) if workload is None else workload
    return float(node_fragmentation(gpu, cpu, problem.node_model, wl).sum())
