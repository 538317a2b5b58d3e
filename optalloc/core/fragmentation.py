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

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from optalloc.core.job import MILLI, Job
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
        """:meth:`of_jobs` of the problem's jobs, counted with numpy over the problem's job arrays."""
        if not problem.jobs:
            return cls.of_jobs((), problem.model_names)
        models: dict[frozenset[str], int] = {}
        model_id = np.array([models.setdefault(j.gpu_models, len(models)) for j in problem.jobs], dtype=np.int64)
        gpus, share = problem.job_gpus, problem.job_share
        used = np.where(gpus > 0, gpus, (share > 0).astype(np.int64))
        milli = np.where(gpus > 0, 1000, share)
        keys = np.stack([problem.demand[:, 0], used, milli, model_id], axis=1)
        weight = problem.job_replicas
        if not include_cpu_only:
            keep = milli > 0
            keys, weight = keys[keep], weight[keep]
        if not len(keys):
            return cls.of_jobs((), problem.model_names)
        unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=weight, minlength=len(unique))
        order = np.argsort(first, kind="stable")  # classes in order of first appearance, as of_jobs
        unique, counts = unique[order], counts[order]
        names = {i: tuple(sorted(m)) for m, i in models.items()}
        table = np.ones((len(unique), len(problem.model_names)), dtype=bool)
        for k, model in enumerate(unique[:, 3].tolist()):
            if names[model]:
                table[k] = [m in names[model] for m in problem.model_names]
        return cls(
            unique[:, 0].astype(np.int64),
            unique[:, 1].astype(np.int64),
            unique[:, 2].astype(np.int64),
            table,
            counts / counts.sum(),
        )

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
        profile = self.profile(gpu)
        out = self.of_profile(profile, cpu.reshape(-1), model.reshape(-1))
        return out.reshape(lead)

    @property
    def columns(self) -> np.ndarray:
        """(C,) the milli threshold of each (threshold, GPUs) group: the columns of a :class:`GpuProfile`."""
        return self._groups.columns

    def profile(self, gpu: np.ndarray) -> GpuProfile:
        """What the fragmentation needs of the GPU slots of each state (``gpu`` (S, G) or (..., G)):
        per group of classes (:attr:`columns`), the GPUs that clear its threshold and their free milli."""
        g = gpu.reshape(-1, gpu.shape[-1])
        free = np.maximum(g, 0)
        total = free.sum(axis=1)
        columns = self.columns
        if columns.size:
            ge = g[:, :, None] >= columns[None, None, :]  # (S, G, C)
            count = ge.sum(axis=1)
            usable = (free[:, :, None] * ge).sum(axis=1)
        else:
            count = usable = np.zeros((len(g), 0), dtype=np.int64)
        return GpuProfile(total.astype(np.int64), count.astype(np.int64), usable.astype(np.int64))

    def of_profile(self, profile: GpuProfile, cpu: np.ndarray, model: np.ndarray) -> np.ndarray:
        """Expected fragmentation (milli-GPU, float64, (S,)) of states given by their GPU profile.

        ``F = total - sum_k w_k [k runs there] usable_k``, with the classes summed by (threshold,
        GPUs needed) group: a class runs where its model is allowed, the CPU suffices and enough
        GPUs clear its threshold; the weight of a group's runnable classes depends only on the
        node's model and on how many of the classes' CPU levels its free CPU reaches, a table
        lookup (:class:`_Groups`). About 15 groups stand for the ~60 classes of an openb workload.
        """
        g = self._groups
        if not len(g.columns):
            return np.asarray(g.everything * profile.total.astype(np.float64))
        weight = g.table[model, g.levels.searchsorted(cpu, "right")]  # (S, C): weight of the classes that may run
        inner = (np.where(profile.count >= g.gpus, weight, 0.0) * profile.usable).sum(axis=1)
        return np.asarray(g.everything * profile.total - inner)

    def of_one(self, total: int, count: Sequence[int], usable: Sequence[int], cpu: int, model: int) -> float:
        """:meth:`of_profile` of one state in plain Python values: the same float, summed in numpy's order.

        For the placer's few new states per decision, where numpy's cost per call exceeds the
        arithmetic (``count``, ``usable``: the state's :class:`GpuProfile` row; ``model`` -1: none).
        """
        g = self._groups
        if not len(g.columns):
            return g.everything * total
        lists = self._lists
        weight = lists.table[model][bisect.bisect_right(lists.levels, cpu)]
        terms = [w * u if n >= need else 0.0 for w, n, u, need in zip(weight, count, usable, lists.gpus, strict=True)]
        return g.everything * total - pairwise_sum(terms)

    def profile_one(self, gpu: Sequence[int]) -> tuple[list[int], list[int]]:
        """:meth:`profile` of one state's GPU slots in plain Python values: its ``count`` and ``usable`` rows."""
        free = sorted(g for g in gpu if g > 0)
        above = list(itertools.accumulate(reversed(free), initial=0))  # above[k]: the k largest, summed
        n = len(free)
        count = [n - bisect.bisect_left(free, t) for t in self._lists.columns]  # GPUs with >= t free
        return count, [above[k] for k in count]

    @cached_property
    def _lists(self) -> _GroupLists:
        g = self._groups
        return _GroupLists(g.columns.tolist(), g.levels.tolist(), g.gpus.tolist(), g.table.tolist())

    @property
    def column_list(self) -> list[int]:
        """:attr:`columns` as a Python list."""
        return self._lists.columns

    @cached_property
    def _groups(self) -> _Groups:
        pairs = sorted({(int(c), int(n)) for c, n in zip(self.column, self.gpus, strict=True)})
        levels = np.unique(self.cpu)
        table = np.zeros((self.access.shape[0], len(levels) + 1, len(pairs)))
        for k in range(len(self.weight)):
            group = pairs.index((int(self.column[k]), int(self.gpus[k])))
            first = int(np.searchsorted(levels, self.cpu[k])) + 1  # free CPU reaching this level and up
            table[self.access[:, k], first:, group] += self.weight[k]
        return _Groups(
            columns=self.thresholds[np.array([p[0] for p in pairs], dtype=np.int64)].astype(np.int64),
            gpus=np.array([p[1] for p in pairs], dtype=np.int64),
            levels=levels.astype(np.int64),
            table=table,
            everything=self.cpu_only_weight + float(self.weight.sum()),
        )


@dataclass(frozen=True)
class _Groups:
    """The GPU classes of a :class:`FragmentationModel` summed by (threshold, GPUs needed) group.

    ``table[m, l, c]``: popularity of group ``c``'s classes that may use model ``m`` and need at most
    the ``l``-th CPU level (``levels`` ascending; ``l`` = how many levels a node's free CPU reaches).
    """

    columns: np.ndarray  # (C,) the group's milli threshold
    gpus: np.ndarray  # (C,) GPUs needed
    levels: np.ndarray  # (L,) distinct CPU needs of the classes
    table: np.ndarray  # (M + 1, L + 1, C)
    everything: float  # total popularity of every class (1 for a normalised workload)


@dataclass(frozen=True)
class _GroupLists:
    """:class:`_Groups` as Python lists, for :meth:`FragmentationModel.of_one`."""

    columns: list[int]
    levels: list[int]
    gpus: list[int]
    table: list[list[list[float]]]


def pairwise_sum(values: Sequence[float]) -> float:
    """``sum`` of floats in the order numpy sums a contiguous row (``np.add.reduce``'s pairwise sum):
    fewer than 8 in sequence; up to 128 in 8 running sums combined as a tree, then the rest; more
    split in two at a multiple of 8. So a plain-Python twin of a numpy score gives the same bits."""
    n = len(values)
    if n < 8:
        out = 0.0
        for v in values:
            out += v
        return out
    if n > 128:
        half = n // 2
        half -= half % 8
        return pairwise_sum(values[:half]) + pairwise_sum(values[half:])
    r = list(values[:8])
    end = n - n % 8
    for i in range(8, end, 8):
        for j in range(8):
            r[j] += values[i + j]
    out = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for i in range(end, n):
        out += values[i]
    return out


@dataclass(frozen=True)
class GpuProfile:
    """The GPU slots of states as the fragmentation sees them, per group of a :class:`FragmentationModel`.

    ``total`` (S,): free milli-GPU; ``count`` (S, C): GPUs with at least ``columns[c]`` free (the
    model's :attr:`~FragmentationModel.columns`); ``usable`` (S, C): free milli-GPU on those GPUs. A
    replica changes one state's profile in O(C) (:meth:`after_share`, :meth:`after_whole`), which is
    how the placement rules score an option without rebuilding the node's GPU slots.
    """

    total: np.ndarray
    count: np.ndarray
    usable: np.ndarray

    def take(self, rows: np.ndarray) -> GpuProfile:
        return GpuProfile(self.total.take(rows), self.count.take(rows, axis=0), self.usable.take(rows, axis=0))

    def after_share(self, rows: np.ndarray, free: np.ndarray, share: int, columns: np.ndarray) -> GpuProfile:
        """Profiles of states ``rows`` after ``share`` milli goes to a GPU with ``free`` milli free (per row)."""
        left = (free - share)[:, None]
        was = columns <= free[:, None]  # the GPU counted in column c before
        stays = columns <= left  # and after
        count = self.count.take(rows, axis=0) - (was ^ stays)  # stays implies was
        usable = self.usable.take(rows, axis=0) - np.where(stays, share, np.where(was, free[:, None], 0))
        return GpuProfile(self.total.take(rows) - share, count, usable)

    def after_whole(self, rows: np.ndarray, gpus: int) -> GpuProfile:
        """Profiles of states ``rows`` after ``gpus`` fully free GPUs are taken (every threshold is at most ``MILLI``)."""
        milli = gpus * MILLI
        return GpuProfile(
            self.total.take(rows) - milli, self.count.take(rows, axis=0) - gpus, self.usable.take(rows, axis=0) - milli
        )


def cluster_fragmentation(
    problem: Problem, gpu: np.ndarray, cpu: np.ndarray, workload: Workload | None = None
) -> float:
    """Total expected fragmentation of the cluster (milli-GPU) in the given free state."""
    wl = Workload.of_problem(problem) if workload is None else workload
    return float(node_fragmentation(gpu, cpu, problem.node_model, wl).sum())
