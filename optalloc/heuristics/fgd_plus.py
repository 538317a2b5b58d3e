"""``fgd-plus``: FGD that also keeps CPU and memory in step with the GPUs, and looks past the next pod.

Same online setting as FGD (one pod at a time, irrevocable, no knowledge of the sequence; only the
class mix of the reference jobs, as FGD's target workload). Each placement option is scored

    score = int(100 x sigmoid(drop / 1000)) - int((BALANCE x loss + HOLE_WEIGHT x hole) / POINT)

(higher wins; ties: the placer's tie break), all terms in milli-GPU:

1. ``drop``: **FGD's fragmentation drop** ``F(before) - F(after)``, scored exactly as upstream FGD.
2. ``loss``: **balance loss** (CPU and memory). A node's *effective* free GPU is
   ``E = min(free milli-GPU, free CPU / c, free memory / m)`` where ``c`` and ``m`` are the reference
   GPU jobs' CPU and memory per milli-GPU. A replica that lowers ``E`` by more than the GPU it takes
   strands GPUs behind exhausted CPU or memory: ``loss = max(0, E_before - E_after - gpu)``. FGD
   alone sees CPU only when one more pod no longer fits, so it lets CPU-hungry pods drain the CPU of
   GPU-dense nodes (8 GPUs, 96 cores) while CPU-rich nodes (2 GPUs, 104 cores) keep idle cores.
   Only while GPUs are the scarcer resource: when the mix asks more of the cluster's CPU than of its
   GPUs (:func:`cpu_pressure` > 1), the CPU runs out first, GPUs stranded behind it were lost anyway,
   and both penalties weigh 0 (``DemandProfile.balance``, ``holes``): fgd-plus places as FGD.
3. ``hole``: **hole lookahead** (shares only). ``V(h)`` is the expected milli-GPU a GPU with ``h``
   free ends up wasting as later shares arrive: each class ``k`` fills it with probability
   ``pi_k = min(1, LOOKAHEAD x p_k)`` (renormalised when they sum above 1), else it stays empty:
   ``V(h) = (1 - sum pi_k) h + sum pi_k V(h - milli_k)`` over the classes that fit. A share putting
   ``s`` on a GPU with ``f`` free costs ``hole = V(f - s) - V(f)``. FGD rates a hole only against
   the next pod, so it pairs a 320 with a lone 470 (a 210 hole only rare tiny shares can fill)
   rather than open a GPU a later 650 completes.

The penalties are converted to score points at the rate FGD's score moves near a zero drop
(``POINT`` = 40 milli-GPU per point) and subtracted *outside* the sigmoid. Until issue 19 they were
added to the drop inside it, and the sigmoid saturates: a penalty of a few thousand milli (a CPU-only
pod on any CPU-bound GPU node, common when CPU-only pods ask for much CPU) scored every such node 0,
so FGD's drop could no longer choose among them and fgd-plus fell 1.5 points behind FGD on a
CPU-heavy list. Outside the sigmoid, equal penalties leave the choice to the drop. With both weights
at 8 the balance and the holes decide whenever they differ by more than a few points; FGD's drop
decides where they are equal. The weights and ``LOOKAHEAD`` were tuned on seeds 42-46 of the default
list (benchmarks/fgd_protocol.py), the move outside the sigmoid checked on seeds 42-44 of the default
and CPU-heavy lists, then everything on the other lists, held-out seeds and the generator's families.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from optalloc.core import MILLI, Job
from optalloc.heuristics.fragmentation import JobKind, job_kinds, typical_workload
from optalloc.heuristics.rules import (
    DECIMALS,
    NONE,
    Candidates,
    Context,
    JobView,
    NodeScalar,
    Rule,
    best_option,
    fragmentation_options,
    fragmentation_options_one,
    round_decimals,
    sigmoid_points,
    sigmoid_points_one,
)

BALANCE = 8.0  # weight of the CPU/memory balance loss (FGD's drop has weight 1)
LOOKAHEAD = 30.0  # chances a hole gets at each class before the cluster fills (kappa)
HOLE_WEIGHT = 8.0  # weight of the hole lookahead term
SCALE = 1000.0  # milli-GPU per sigmoid unit, as upstream FGD
POINT = SCALE / 25.0  # milli-GPU per score point: FGD's score moves 25 / SCALE points per milli near a zero drop


@dataclass(frozen=True)
class DemandProfile:
    """What fgd-plus knows of the job mix: resource ratios and the hole values.

    ``cpu_per_milli`` (milli-cores) and ``memory_per_milli`` (MiB) per milli-GPU of the reference GPU
    jobs; ``hole_value`` (1001,) expected final waste (milli-GPU) of a GPU with ``h`` milli free;
    ``balance`` and ``holes``: the weights of the balance loss and of the hole lookahead,
    :data:`BALANCE` and :data:`HOLE_WEIGHT` while GPUs are the scarcer resource, 0 when the mix asks
    more of the cluster's CPU than of its GPUs (:func:`cpu_pressure` > 1): fgd-plus is then FGD.
    """

    cpu_per_milli: float
    memory_per_milli: float
    hole_value: np.ndarray
    balance: float = BALANCE
    holes: float = HOLE_WEIGHT

    @functools.cached_property
    def hole_list(self) -> list[float]:
        """:attr:`hole_value` as a Python list (for the scalar twin)."""
        out: list[float] = self.hole_value.tolist()
        return out

    @classmethod
    def of(
        cls,
        jobs: Iterable[Job],
        model_names: tuple[str, ...],
        *,
        lookahead: float | None = None,
        kinds: Counter[JobKind] | None = None,
        cluster: tuple[int, int] | None = None,
    ) -> DemandProfile:
        """The profile of ``jobs`` (``kinds``: their :func:`job_kinds`, when the caller has it).

        ``cluster``: the cluster's CPU (milli-cores) and GPU (milli-GPU) capacity; with it, the balance
        loss is weighed by :func:`cpu_pressure` (without it, at :data:`BALANCE`).
        """
        jobs = jobs if isinstance(jobs, tuple | list) else list(jobs)
        kinds = job_kinds(jobs) if kinds is None else kinds
        milli = cpu = memory = all_cpu = 0
        for (c, m, gpus, share, _models, replicas), times in kinds.items():
            all_cpu += c * replicas * times
            if gpus or share:
                milli += (gpus * MILLI + share) * replicas * times
                cpu += c * replicas * times
                memory += m * replicas * times
        workload = typical_workload(jobs, model_names, popularity=1.0, include_cpu_only=False, kinds=kinds)
        pressure = cpu_pressure(all_cpu, milli, *cluster) if cluster is not None else 0.0
        return cls(
            cpu_per_milli=cpu / milli if milli else 0.0,
            memory_per_milli=memory / milli if milli else 0.0,
            hole_value=hole_values(workload.milli, workload.popularity, LOOKAHEAD if lookahead is None else lookahead),
            balance=BALANCE if pressure <= 1.0 else 0.0,
            holes=HOLE_WEIGHT if pressure <= 1.0 else 0.0,
        )


def cpu_pressure(cpu: int, milli: int, cluster_cpu: int, cluster_milli: int) -> float:
    """How much more the mix asks of the cluster's CPU than of its GPUs: ``(cpu / cluster_cpu) /
    (milli / cluster_milli)`` for jobs asking ``cpu`` milli-cores and ``milli`` milli-GPU in all (CPU-only
    jobs included). Above 1 the cluster runs out of CPU before it runs out of GPUs: stranding GPUs
    behind CPU, which the balance loss prevents, then costs nothing that was not lost anyway, and the
    loss only moves CPU-hungry pods off the nodes FGD would pick (on the generator's cpu-heavy mix,
    pressure 1.37-1.42, fgd-plus fell 0.7 points behind FGD with it); nor are GPU holes what limits
    the allocation, so the hole lookahead steps aside too and fgd-plus places as FGD."""
    if cluster_cpu <= 0:
        return math.inf
    if milli <= 0 or cluster_milli <= 0:
        return math.inf if cpu > 0 else 0.0
    return (cpu / cluster_cpu) / (milli / cluster_milli)


def hole_values(milli: np.ndarray, popularity: np.ndarray, lookahead: float) -> np.ndarray:
    """``V[h]`` for h = 0..1000: expected final waste of a GPU with ``h`` milli free (see module doc)."""
    gpu = milli > 0
    size, p = milli[gpu].astype(np.int64), popularity[gpu].astype(np.float64)
    if p.sum() > 0:
        p = p / p.sum()
    chance = np.minimum(1.0, lookahead * p)
    value = np.zeros(MILLI + 1)
    for h in range(1, MILLI + 1):
        fit = size <= h
        pi = chance[fit]
        total = pi.sum()
        if total > 1:
            pi, total = pi / total, 1.0
        value[h] = (1.0 - total) * h + float(pi @ value[h - size[fit]])
    return value


def effective_gpu(gpu: np.ndarray, cpu: np.ndarray, memory: np.ndarray, profile: DemandProfile) -> np.ndarray:
    """(S,) free milli-GPU the node can still feed with CPU and memory at the reference ratios."""
    return _effective(np.maximum(gpu, 0).sum(axis=-1), cpu, memory, profile)


def _effective(free: np.ndarray, cpu: np.ndarray, memory: np.ndarray, profile: DemandProfile) -> np.ndarray:
    """:func:`effective_gpu` of states given by their free milli-GPU."""
    out = free.astype(np.float64)
    if profile.cpu_per_milli > 0:
        out = np.minimum(out, cpu / profile.cpu_per_milli)
    if profile.memory_per_milli > 0:
        out = np.minimum(out, memory / profile.memory_per_milli)
    result: np.ndarray = np.maximum(out, 0.0)
    return result


def fgd_plus(c: Candidates, job: JobView, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """FGD's score of the drop, minus the balance and hole penalties in score points (module doc)."""
    assert ctx.fragmentation is not None and ctx.profile is not None
    profile: DemandProfile = ctx.profile
    opt = fragmentation_options(c, job, ctx)
    row = opt.row
    before = _effective(c.free_gpu, c.cpu, c.memory, profile)[row]
    after = _effective(opt.total, opt.cpu, c.memory[row] - job.memory, profile)
    penalty = profile.balance * np.maximum(before - after - job.total_gpu, 0.0)
    if job.share:
        penalty = penalty + profile.holes * (profile.hole_value[opt.free - job.share] - profile.hole_value[opt.free])
    points = sigmoid_points(opt.drop, SCALE)  # FGD's score of the drop
    score = points - np.trunc(np.round(penalty, DECIMALS) / POINT)  # exact ties stay ties
    return best_option(len(c.nodes), row, opt.slot, score)


def _effective_one(free: int, cpu: int, memory: int, profile: DemandProfile) -> float:
    """:func:`_effective` of one state."""
    out = float(free)
    if profile.cpu_per_milli > 0:
        out = min(out, cpu / profile.cpu_per_milli)
    if profile.memory_per_milli > 0:
        out = min(out, memory / profile.memory_per_milli)
    return max(out, 0.0)


def fgd_plus_one(n: NodeScalar, job: JobView, ctx: Context) -> tuple[float, int]:
    """:func:`fgd_plus` of one interned state, in plain Python (the same floats, the first best option)."""
    profile: DemandProfile = ctx.profile
    before = _effective_one(n.free, n.cpu, n.memory, profile)
    memory = n.memory - job.memory
    holes = profile.hole_list if job.share else None
    best, choice = -math.inf, NONE
    for slot, free, drop, total, cpu in fragmentation_options_one(n, job, ctx):
        penalty = profile.balance * max(before - _effective_one(total, cpu, memory, profile) - job.total_gpu, 0.0)
        if holes is not None:
            penalty = penalty + profile.holes * (holes[free - job.share] - holes[free])
        value = sigmoid_points_one(drop, SCALE) - math.trunc(round_decimals(penalty) / POINT)
        if value > best:
            best, choice = value, slot
    return best, choice


RULE = Rule(
    "fgd-plus",
    "FGD + CPU/memory balance + hole lookahead for shares (ours; beats FGD on the openb traces)",
    fgd_plus,
    needs_workload=True,
    needs_profile=True,
    state_scalar=fgd_plus_one,
)
