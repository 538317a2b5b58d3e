"""Placement rules: a vectorised score over candidate nodes, and the GPU a share takes on each.

A rule sees a batch of candidate nodes that can take one replica now (:class:`Candidates`) and
returns, per node, a score (higher is better) and, for a GPU-sharing replica, the GPU index it
would take there. The placer picks the best-scoring node; ties go to the lowest node index (the
Kubernetes simulator of the FGD paper breaks ties by the smallest node name). A score depends
only on that node's state and the job, which is what lets the placer cache it per job class until
the node changes.

The scores follow the definitions of the FGD paper's simulator (github.com/hkust-adsl/
kubernetes-scheduler-simulator, ``pkg/simulator/plugin``), including its integer 0-100 scale: the
truncation creates the ties that upstream breaks by node order, and that changes results.
docs/heuristics.md gives each definition and where it differs from upstream.

Whole GPUs are always the lowest-index free GPUs of the node (as upstream). A share goes, per rule,
to the tightest GPU that fits (best-fit, dot-product, gpu-packing, gpu-clustering: upstream's
``best`` GPU selection), the first that fits (first-fit), the emptiest (worst-fit), a random one
(random), or the one whose fragmentation grows least (fgd).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optalloc.core import MILLI
from optalloc.core.fragmentation import FragmentationModel

NONE = -1  # no GPU index (whole-GPU or CPU-only replica)


@dataclass(frozen=True)
class JobView:
    """One replica's demand: cpu milli-cores, memory MiB, whole ``gpus`` or a ``share`` (milli)."""

    cpu: int
    memory: int
    gpus: int
    share: int
    gpu_memory: int

    @property
    def per_gpu(self) -> int:
        """Milli-GPU taken on each GPU touched (1000, the share, or 0)."""
        return MILLI if self.gpus else self.share

    @property
    def gpus_used(self) -> int:
        return self.gpus if self.gpus else (1 if self.share else 0)

    @property
    def total_gpu(self) -> int:
        """Milli-GPU of one replica."""
        return self.gpus * MILLI + self.share

    @property
    def tag(self) -> int:
        """GPU-clustering kind: 0 for a share, ``gpus`` for whole GPUs, -1 for CPU-only."""
        return self.gpus if self.gpus else (0 if self.share else -1)


@dataclass(frozen=True)
class Candidates:
    """States of ``b`` candidate nodes (all can take one replica of the job now)."""

    nodes: np.ndarray  # (b,) node indices
    gpu: np.ndarray  # (b, G) free milli per GPU slot, -1 for absent slots
    ok: np.ndarray  # (b, G) bool: slots that can take one of the replica's GPUs
    cpu: np.ndarray  # (b,) free milli-cores
    memory: np.ndarray  # (b,) free MiB
    model: np.ndarray  # (b,) GPU model index, -1 for none
    gpus: np.ndarray  # (b,) GPUs of the node
    tags: np.ndarray  # (b, T) replicas of each GPU kind on the node (see JobView.tag)

    @property
    def free_gpu(self) -> np.ndarray:
        """(b,) free milli-GPU of each node."""
        total: np.ndarray = np.maximum(self.gpu, 0).sum(axis=1)
        return total


@dataclass(frozen=True)
class Context:
    """What a rule may use besides the node and the job: scales, the workload models, the random stream."""

    max_cpu: int  # largest node CPU (milli-cores); upstream's MaxSpecCpu = 128000
    max_gpu: int  # largest node GPU capacity (milli); upstream's MaxSpecGpu = 8000
    fragmentation: FragmentationModel | None
    rng: np.random.Generator
    profile: Any = None  # fgd-plus's DemandProfile (optalloc.heuristics.fgd_plus)


ScoreFn = Callable[[Candidates, JobView, Context], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Rule:
    """A placement rule: ``score(candidates, job, context) -> (score (b,), share GPU (b,))``."""

    name: str
    summary: str
    score: ScoreFn
    randomized: bool = False  # picks uniformly among feasible nodes instead of the best score
    needs_workload: bool = False  # uses the FGD target workload
    needs_profile: bool = False  # uses the demand profile of the reference jobs (fgd-plus)


# GPU choice for a share --------------------------------------------------------------------
def tightest_gpu(c: Candidates) -> np.ndarray:
    """The fitting GPU with the least free milli (lowest index on ties): upstream ``best``."""
    big = np.iinfo(np.int64).max
    choice: np.ndarray = np.where(c.ok, c.gpu, big).argmin(axis=1)
    return choice


def emptiest_gpu(c: Candidates) -> np.ndarray:
    choice: np.ndarray = np.where(c.ok, c.gpu, -2).argmax(axis=1)
    return choice


def first_gpu(c: Candidates) -> np.ndarray:
    choice: np.ndarray = c.ok.argmax(axis=1)
    return choice


def random_gpu(c: Candidates, rng: np.random.Generator) -> np.ndarray:
    keys = np.where(c.ok, rng.random(c.ok.shape), -1.0)
    choice: np.ndarray = keys.argmax(axis=1)
    return choice


def _share(c: Candidates, job: JobView, pick: Callable[[Candidates], np.ndarray]) -> np.ndarray:
    if not job.share:
        return np.full(len(c.nodes), NONE, dtype=np.int64)
    return pick(c).astype(np.int64)


def _trunc(x: np.ndarray) -> np.ndarray:
    """Go's ``int64(x)``: truncation toward zero, kept as float64."""
    out: np.ndarray = np.trunc(x)
    return out


# Scores ------------------------------------------------------------------------------------
def first_fit(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Every node scores the same: the lowest-index feasible node wins (upstream FirstFit)."""
    return np.zeros(len(c.nodes)), _share(c, job, first_gpu)


def best_fit(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Least CPU and GPU left after placing, each normalised by the largest node, equal weights."""
    left = (c.cpu - job.cpu) / ctx.max_cpu * 0.5
    left = left + (c.free_gpu - job.total_gpu) / ctx.max_gpu * 0.5
    return _trunc((1.0 - left) * 100.0), _share(c, job, tightest_gpu)


def worst_fit(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Most left after placing: milli-cores + 100 x milli-GPU (upstream WorstFit's weights)."""
    left = (c.cpu - job.cpu) * 1.0 + (c.free_gpu - job.total_gpu) * 100.0
    return _trunc(left), _share(c, job, emptiest_gpu)


def dot_product(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Tetris alignment of (free CPU, free GPU) with the demand, both over the largest node.

    Upstream scores ``1 - dot / 2`` (``dimExtMethod=merge, normMethod=max``): the smaller the dot
    product, the better, i.e. it sends a demand to the node with less of what the demand uses.
    """
    dot = (c.cpu / ctx.max_cpu) * (job.cpu / ctx.max_cpu) + (c.free_gpu / ctx.max_gpu) * (job.total_gpu / ctx.max_gpu)
    return _trunc(100.0 * (1.0 - dot / 2.0)), _share(c, job, tightest_gpu)


def gpu_packing(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Prefer partially used GPUs, then free GPUs on used nodes, then idle nodes (upstream GpuPacking).

    Idle node (every GPU free): ``max(33 - free GPUs, free GPUs)``. Must take a free GPU on a used
    node: ``max(50 - free GPUs taken, 33)``. A share fits a used GPU: ``max(100 - p // 10, 50)`` with
    ``p`` the integer percent free on that GPU. CPU-only replicas score 0 everywhere.
    """
    n = len(c.nodes)
    share_gpu = _share(c, job, tightest_gpu)
    if not job.per_gpu:
        return np.zeros(n), share_gpu
    fully_free = (c.gpu == MILLI).sum(axis=1)
    idle = fully_free == c.gpus
    if job.share:
        left = c.gpu[np.arange(n), share_gpu]
        on_used = np.maximum(100 - (left * 100 // MILLI) // 10, 50)
        used = np.where(left == MILLI, max(50 - 1, 33), on_used)
    else:
        used = np.full(n, max(50 - job.gpus, 33))
    score = np.where(idle, np.maximum(33 - fully_free, fully_free), used)
    return score.astype(np.float64), share_gpu


def gpu_clustering(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Keep GPU kinds (share, 1-GPU, 2-GPU, ...) together on nodes (upstream GpuClustering).

    ``25 * (max GPU - free GPU) // max GPU`` plus 75 on a node that only hosts this kind, 50 on a
    node hosting this kind among others, 25 on a node with no GPU replica, 0 otherwise.
    """
    share_gpu = _share(c, job, tightest_gpu)
    if job.tag < 0:
        return np.zeros(len(c.nodes)), share_gpu
    kinds = (c.tags > 0).sum(axis=1)
    has = c.tags[:, job.tag] > 0
    base = 25 * (ctx.max_gpu - c.free_gpu) // ctx.max_gpu
    bonus = np.where(has, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
    return (base + bonus).astype(np.float64), share_gpu


def random_choice(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """The placer picks uniformly among feasible nodes; a share takes a random fitting GPU."""
    return np.zeros(len(c.nodes)), _share(c, job, lambda cand: random_gpu(cand, ctx.rng))


def after_states(c: Candidates, job: JobView) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Node states after placing one replica: ``(row, slot, gpu, cpu)`` per option.

    A share has one option per fitting GPU (``slot`` = that GPU), whole GPUs and CPU-only replicas
    one option per node (the lowest-index free GPUs; ``slot`` = -1).
    """
    if job.share:
        row, slot = np.nonzero(c.ok)
        gpu = c.gpu[row].copy()
        gpu[np.arange(len(row)), slot] -= job.share
        return row, slot, gpu, c.cpu[row] - job.cpu
    row = np.arange(len(c.nodes))
    gpu = c.gpu
    if job.gpus:
        take = c.ok & (np.cumsum(c.ok, axis=1) <= job.gpus)
        gpu = gpu - take * MILLI
    return row, np.full(len(row), NONE, dtype=np.int64), gpu, c.cpu - job.cpu


def best_option(n: int, row: np.ndarray, slot: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the best ``value`` over its options and the option's slot (first on ties)."""
    if len(row) == n and (slot == NONE).all():
        return value, slot
    best = np.full(n, -np.inf)
    choice = np.full(n, NONE, dtype=np.int64)
    order = np.lexsort((np.arange(len(row)), -value, row))  # per row: best value, then first slot
    first = np.ones(len(order), dtype=bool)
    first[1:] = row[order][1:] != row[order][:-1]
    pick = order[first]
    best[row[pick]] = value[pick]
    choice[row[pick]] = slot[pick]
    return best, choice


def fragmentation_options(
    c: Candidates, job: JobView, ctx: Context
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`after_states` plus, per option, how much it lowers the node's fragmentation (milli)."""
    assert ctx.fragmentation is not None
    row, slot, gpu, cpu = after_states(c, job)
    b = len(c.nodes)
    frag = ctx.fragmentation(
        np.concatenate([c.gpu, gpu]), np.concatenate([c.cpu, cpu]), np.concatenate([c.model, c.model[row]])
    )
    return row, slot, gpu, cpu, frag[:b][row] - frag[b:]


def fgd(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Fragmentation gradient descent: the option whose expected fragmentation grows least.

    Upstream's score is ``int(100 * sigmoid((F_before - F_after) / 1000))`` per node (a share
    tries every fitting GPU and keeps the best, the first on ties).
    """
    row, slot, _, _, delta = fragmentation_options(c, job, ctx)
    score = _trunc((1.0 / (1.0 + np.exp(-delta / 1000.0))) * 100.0)
    return best_option(len(c.nodes), row, slot, score)


RULE_LIST: tuple[Rule, ...] = (
    Rule("first-fit", "first feasible node in node order (first fitting GPU for a share)", first_fit),
    Rule("best-fit", "node with the least CPU and GPU left after placing (FGD paper's BestFit)", best_fit),
    Rule("worst-fit", "node with the most left after placing: spread (Kubernetes LeastAllocated)", worst_fit),
    Rule("dot-product", "Tetris alignment of free resources with the demand (FGD paper's DotProd)", dot_product),
    Rule("gpu-packing", "partially used GPUs first, then used nodes, then idle nodes (FGD paper)", gpu_packing),
    Rule("gpu-clustering", "keep jobs of the same GPU kind on the same nodes (FGD paper)", gpu_clustering),
    Rule("random", "a uniformly random feasible node (seeded)", random_choice, randomized=True),
    Rule("fgd", "fragmentation gradient descent: least growth of expected GPU fragmentation", fgd, needs_workload=True),
)
