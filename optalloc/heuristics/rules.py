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

import bisect
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optalloc.core import MILLI
from optalloc.core.fragmentation import FragmentationModel, GpuProfile

NONE = -1  # no GPU index (whole-GPU or CPU-only replica)
DECIMALS = 6  # fragmentation values are compared at this many decimals of a milli-GPU


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
    profile: GpuProfile | None = None  # fragmentation profile of each candidate (computed when absent)
    fragmentation: np.ndarray | None = None  # (b,) its expected fragmentation (computed when absent)

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


class NodeScalar:
    """One candidate node in plain Python values, for the rules' scalar twins.

    ``gpu``: free milli per GPU slot (-1 for absent slots), ``ok``: slots the replica's GPU can take
    (filled for shares only), ``free``: free milli-GPU of the node, ``gpus``: its GPU count, ``tags``:
    replicas per GPU kind (filled for rules that use them).

    For the fragmentation rules' twins (``Rule.state_scalar``, one interned node state) also
    ``memory``, ``model`` (-1: none), the state's fragmentation profile row ``count``, ``usable``
    (:class:`~optalloc.core.fragmentation.GpuProfile`) and its expected ``fragmentation``.
    """

    __slots__ = ("count", "cpu", "fragmentation", "free", "gpu", "gpus", "memory", "model", "ok", "tags", "usable")

    def __init__(self) -> None:
        self.cpu = self.free = self.gpus = self.memory = self.model = 0
        self.gpu: list[int] = []
        self.ok: list[bool] = []
        self.tags: list[int] = []
        self.count: list[int] = []
        self.usable: list[int] = []
        self.fragmentation = 0.0


ScalarFn = Callable[[NodeScalar, JobView, Context], tuple[float, int]]


@dataclass(frozen=True)
class Rule:
    """A placement rule: ``score(candidates, job, context) -> (score (b,), share GPU (b,))``."""

    name: str
    summary: str
    score: ScoreFn
    randomized: bool = False  # picks uniformly among feasible nodes instead of the best score
    needs_workload: bool = False  # uses the FGD target workload
    needs_profile: bool = False  # uses the demand profile of the reference jobs (fgd-plus)
    uses_tags: bool = False  # reads ``Candidates.tags`` (the GPU kinds a node hosts)
    uses_slots: bool = False  # reads the GPU slots of nodes also for whole-GPU replicas
    integer_scores: bool = True  # scores are whole numbers (upstream's truncated 0-100 scale)
    # The same score of one node in plain Python (optional). The placer uses it for the few nodes
    # changed since a job class was last seen, where numpy's per-call cost exceeds the arithmetic.
    # It must give exactly the vectorised score (tests check both on random states).
    scalar: ScalarFn | None = None
    # The same for the rules scored per interned node state (fgd, fgd-plus): the score of one state,
    # for the few states new since a job class was last placed (NodeScalar with the state fields).
    state_scalar: ScalarFn | None = None


# GPU choice for a share --------------------------------------------------------------------
_BIG = np.iinfo(np.int64).max


def tightest_gpu(c: Candidates) -> np.ndarray:
    """The fitting GPU with the least free milli (lowest index on ties): upstream ``best``."""
    choice: np.ndarray = np.where(c.ok, c.gpu, _BIG).argmin(axis=1)
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


# Scalar twins: the same scores of one node, in plain Python --------------------------------------
def _tightest(n: NodeScalar) -> int:
    best = -1
    for g, ok in enumerate(n.ok):
        if ok and (best < 0 or n.gpu[g] < n.gpu[best]):
            best = g
    return best if best >= 0 else 0


def _emptiest(n: NodeScalar) -> int:
    best, value = 0, -2
    for g, ok in enumerate(n.ok):
        if ok and n.gpu[g] > value:
            best, value = g, n.gpu[g]
    return best


def _first(n: NodeScalar) -> int:
    for g, ok in enumerate(n.ok):
        if ok:
            return g
    return 0


def first_fit_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    return 0.0, _first(n) if job.share else NONE


def best_fit_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    left = (n.cpu - job.cpu) / ctx.max_cpu * 0.5
    left = left + (n.free - job.total_gpu) / ctx.max_gpu * 0.5
    return float(math.trunc((1.0 - left) * 100.0)), _tightest(n) if job.share else NONE


def worst_fit_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    left = (n.cpu - job.cpu) * 1.0 + (n.free - job.total_gpu) * 100.0
    return float(math.trunc(left)), _emptiest(n) if job.share else NONE


def dot_product_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    dot = (n.cpu / ctx.max_cpu) * (job.cpu / ctx.max_cpu) + (n.free / ctx.max_gpu) * (job.total_gpu / ctx.max_gpu)
    return float(math.trunc(100.0 * (1.0 - dot / 2.0))), _tightest(n) if job.share else NONE


def gpu_packing_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    share_gpu = _tightest(n) if job.share else NONE
    if not job.per_gpu:
        return 0.0, share_gpu
    fully_free = sum(1 for v in n.gpu if v == MILLI)
    if fully_free == n.gpus:
        return float(max(33 - fully_free, fully_free)), share_gpu
    if job.share:
        left = n.gpu[share_gpu]
        return float(max(50 - 1, 33) if left == MILLI else max(100 - (left * 100 // MILLI) // 10, 50)), share_gpu
    return float(max(50 - job.gpus, 33)), share_gpu


def gpu_clustering_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    share_gpu = _tightest(n) if job.share else NONE
    if job.tag < 0:
        return 0.0, share_gpu
    kinds = sum(1 for t in n.tags if t > 0)
    if n.tags[job.tag] > 0:
        bonus = 75 if kinds == 1 else 50
    else:
        bonus = 25 if kinds == 0 else 0
    return float(25 * (ctx.max_gpu - n.free) // ctx.max_gpu + bonus), share_gpu


@dataclass(frozen=True)
class Options:
    """Where one replica could go on each candidate, and how much each option lowers fragmentation.

    A share has one option per distinct free amount among the GPUs it fits (GPUs equally free give
    the same node state; ``slot`` is the lowest such GPU); whole GPUs and CPU-only replicas have one
    option per candidate (the lowest-index free GPUs; ``slot`` = -1). ``free`` is the milli free on the
    option's GPU before (0 without a share), ``drop`` the fall of the node's expected fragmentation
    ``F(before) - F(after)`` (milli-GPU), ``total`` the node's free milli-GPU after and ``cpu`` its
    free milli-cores after.
    """

    row: np.ndarray
    slot: np.ndarray
    free: np.ndarray
    drop: np.ndarray
    total: np.ndarray
    cpu: np.ndarray


def fragmentation_options(c: Candidates, job: JobView, ctx: Context) -> Options:
    """Every option of one replica on the candidates (:class:`Options`), with its fragmentation drop.

    The state after an option differs from the node's state by one GPU (a share) or by whole free
    GPUs, so its fragmentation profile is the node's, changed in O(groups)
    (:class:`~optalloc.core.fragmentation.GpuProfile`): the same numbers as rebuilding the node's
    slots, without doing it.
    """
    model = ctx.fragmentation
    assert model is not None
    before = c.profile if c.profile is not None else model.profile(c.gpu)
    f_before = c.fragmentation if c.fragmentation is not None else model.of_profile(before, c.cpu, c.model)
    if job.share:
        row, slot = np.nonzero(c.ok)  # row-major: lowest slot first within a row
        free = c.gpu[row, slot]
        if len(row) > 64:  # many options: one per distinct (candidate, free milli) is enough
            _, first = np.unique(row * (MILLI + 1) + free, return_index=True)
            row, slot, free = row[first], slot[first], free[first]
        after = before.after_share(row, free, job.share, model.columns)
        cpu = c.cpu.take(row) - job.cpu
        f_before, node_model = f_before.take(row), c.model.take(row)
    else:
        row = np.arange(len(c.nodes))
        slot = np.full(len(row), NONE, dtype=np.int64)
        free = np.zeros(len(row), dtype=np.int64)
        after = before.after_whole(row, job.gpus) if job.gpus else before
        cpu = c.cpu - job.cpu
        node_model = c.model
    # Rounded to 1e-6 milli: a drop that is 0 in exact arithmetic must score exactly 50, whatever order
    # the sums were taken in (real drops are multiples of popularity x milli, far above that).
    drop = np.round(f_before - model.of_profile(after, cpu, node_model), DECIMALS)
    return Options(row, slot, free, drop, after.total, cpu)


def fragmentation_options_one(n: NodeScalar, job: JobView, ctx: Context) -> list[tuple[int, int, float, int, int]]:
    """:func:`fragmentation_options` of one state in plain Python: (slot, free, drop, total, cpu) per
    option, in the same order and with the same floats. A share has one option per distinct free amount
    (the lowest slot): GPUs equally free leave the same state, and ties go to the lowest slot anyway."""
    model = ctx.fragmentation
    assert model is not None
    cpu = n.cpu - job.cpu
    if job.share:
        share, columns, out, seen = job.share, model.column_list, [], set()
        for slot, free in enumerate(n.gpu):
            if not n.ok[slot] or free in seen:
                continue
            seen.add(free)
            left = free - share
            count = [c - ((t <= free) ^ (t <= left)) for c, t in zip(n.count, columns, strict=True)]
            usable = [
                u - (share if t <= left else (free if t <= free else 0)) for u, t in zip(n.usable, columns, strict=True)
            ]
            after = model.of_one(n.free - share, count, usable, cpu, n.model)
            out.append((slot, free, round_decimals(n.fragmentation - after), n.free - share, cpu))
        return out
    if job.gpus:
        milli = job.gpus * MILLI
        count = [c - job.gpus for c in n.count]
        usable = [u - milli for u in n.usable]
        after = model.of_one(n.free - milli, count, usable, cpu, n.model)
        return [(NONE, 0, round_decimals(n.fragmentation - after), n.free - milli, cpu)]
    after = model.of_one(n.free, n.count, n.usable, cpu, n.model)
    return [(NONE, 0, round_decimals(n.fragmentation - after), n.free, cpu)]


def round_decimals(x: float) -> float:
    """``np.round(x, DECIMALS)`` of one float (numpy scales, rounds half to even, scales back)."""
    return round(x * _SCALE) / _SCALE


_SCALE = 10.0**DECIMALS


def sigmoid_points_one(drop: float, scale: float = 1000.0) -> float:
    """:func:`sigmoid_points` of one drop."""
    return float(bisect.bisect_right(_points_list(float(scale)), drop))


@functools.cache
def _points_list(scale: float) -> list[float]:
    out: list[float] = _points_table(scale).tolist()
    return out


def best_option(n: int, row: np.ndarray, slot: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate, the best ``value`` over its options and the option's slot (lowest slot on ties)."""
    if len(row) == n and (slot == NONE).all():
        return value, slot
    best = np.full(n, -np.inf)
    choice = np.full(n, NONE, dtype=np.int64)
    order = np.lexsort((slot, -value, row))  # per row: best value, then lowest slot
    first = np.ones(len(order), dtype=bool)
    first[1:] = row[order][1:] != row[order][:-1]
    pick = order[first]
    best[row[pick]] = value[pick]
    choice[row[pick]] = slot[pick]
    return best, choice


def sigmoid_points(drop: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """``int(100 * sigmoid(drop / scale))`` (upstream FGD's score of a fragmentation drop), float64.

    ``drop`` must be rounded to :data:`DECIMALS` decimals (as :func:`fragmentation_options` gives
    it): the score is then read off a table of the smallest such drop reaching each point, one
    ``searchsorted`` instead of six array operations. Tests check it equals the formula.
    """
    out: np.ndarray = _points_table(float(scale)).searchsorted(drop, "right").astype(np.float64)
    return out


def sigmoid_formula(drop: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """:func:`sigmoid_points` computed directly."""
    return _trunc((1.0 / (1.0 + np.exp(-drop / scale))) * 100.0)


@functools.cache
def _points_table(scale: float) -> np.ndarray:
    """(100,) the smallest drop (a multiple of 10**-DECIMALS) whose score reaches 1, 2, ..., 100."""
    step = 10.0**-DECIMALS
    # bisection on the index of the drop on the grid, for every point at once
    low = np.full(100, -(10**14), dtype=np.int64)  # scores 0 here
    high = np.full(100, 10**14, dtype=np.int64)  # the score is 100 here
    points = np.arange(1, 101)
    while (high - low > 1).any():
        mid = (low + high) // 2
        with np.errstate(over="ignore"):  # exp of a large negative drop: the score is 0 there
            reach = sigmoid_formula(np.round(mid * step, DECIMALS), scale) >= points
        high = np.where(reach, mid, high)
        low = np.where(reach, low, mid)
    table: np.ndarray = np.round(high * step, DECIMALS)
    return table


def fgd(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Fragmentation gradient descent: the option whose expected fragmentation grows least.

    Upstream's score is ``int(100 * sigmoid((F_before - F_after) / 1000))`` per node (a share
    tries every fitting GPU and keeps the best, the first on ties).
    """
    opt = fragmentation_options(c, job, ctx)
    score = sigmoid_points(opt.drop)
    if not job.share:
        return score, opt.slot
    return best_option(len(c.nodes), opt.row, opt.slot, score)


def fgd_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    """:func:`fgd` of one state (the first of the best options)."""
    best, choice = -math.inf, NONE
    for slot, _free, drop, _total, _cpu in fragmentation_options_one(n, job, ctx):
        value = sigmoid_points_one(drop)
        if value > best:
            best, choice = value, slot
    return best, choice


RULE_LIST: tuple[Rule, ...] = (
    Rule(
        "first-fit",
        "first feasible node in node order (first fitting GPU for a share)",
        first_fit,
        scalar=first_fit_one,
    ),
    Rule(
        "best-fit",
        "node with the least CPU and GPU left after placing (FGD paper's BestFit)",
        best_fit,
        scalar=best_fit_one,
    ),
    Rule(
        "worst-fit",
        "node with the most left after placing: spread (Kubernetes LeastAllocated)",
        worst_fit,
        scalar=worst_fit_one,
    ),
    Rule(
        "dot-product",
        "Tetris alignment of free resources with the demand (FGD paper's DotProd)",
        dot_product,
        scalar=dot_product_one,
    ),
    Rule(
        "gpu-packing",
        "partially used GPUs first, then used nodes, then idle nodes (FGD paper)",
        gpu_packing,
        uses_slots=True,
        scalar=gpu_packing_one,
    ),
    Rule(
        "gpu-clustering",
        "keep jobs of the same GPU kind on the same nodes (FGD paper)",
        gpu_clustering,
        uses_tags=True,
        scalar=gpu_clustering_one,
    ),
    Rule("random", "a uniformly random feasible node (seeded)", random_choice, randomized=True),
    Rule(
        "fgd",
        "fragmentation gradient descent: least growth of expected GPU fragmentation",
        fgd,
        needs_workload=True,
        state_scalar=fgd_one,
    ),
)
