"""The FGD fragmentation measure, fast: many hypothetical node states scored in a dozen numpy calls.

The definition is the core's (:func:`optalloc.core.node_fragmentation`, after upstream ``frag.go``):
for task class ``m`` a node strands all its free milli-GPU when ``m`` cannot run there (CPU-only
class, GPU model not allowed, CPU short, or fewer than ``gpus_m`` GPUs with ``milli_m`` free), else
only the free milli-GPU of the GPUs too full for ``m``. The node's fragmentation is the
popularity-weighted sum over classes.

The core loops over classes in Python (eight numpy calls per class). Here classes that share a
milli threshold share the work: per distinct threshold ``t`` we count the GPUs with ``>= t`` free and
sum the free milli below ``t`` once, then every class reads its column. Same numbers (tests pin it),
about ten numpy calls in all, which is what keeps a whole FGD run of ten thousand pods in seconds.

:func:`typical_workload` builds the target workload as the upstream simulator does: the most
frequent task classes covering a popularity threshold (95% in the paper's runs) of the pods.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from operator import attrgetter

import numpy as np

from optalloc.core import MILLI, Job, Workload
from optalloc.core.errors import ProblemError

JobKind = tuple[int, int, int, int, frozenset[str], int]


def typical_workload(
    jobs: Iterable[Job],
    model_names: tuple[str, ...],
    *,
    popularity: float = 0.95,
    include_cpu_only: bool = True,
    gpu_weight: float = 0.0,
    kinds: Counter[JobKind] | None = None,
) -> Workload:
    """The target workload of FGD: the most frequent task classes covering ``popularity`` of the tasks.

    A class is the tuple (cpu milli-cores, GPUs touched, milli-GPU per GPU, allowed models), counted
    once per replica. Classes are taken in decreasing count (ties: larger cpu, then milli, then GPU
    count first, as upstream's reverse sort) until their cumulative share reaches ``popularity``,
    then renormalised to sum to 1. ``popularity=1`` keeps every class. ``include_cpu_only=False``
    drops CPU-only tasks (upstream ``isInvolvedCpuPods``). ``gpu_weight > 0`` counts a whole-GPU task
    as ``1 + gpus * gpu_weight`` tasks (upstream ``gpuResWeight``; the paper's runs used 0).
    ``kinds``: :func:`job_kinds` of ``jobs``, when the caller has it.
    """
    if not 0 < popularity <= 1:
        raise ProblemError("popularity", popularity, "is not in (0, 1]")
    if gpu_weight < 0:
        raise ProblemError("gpu_weight", gpu_weight, "is negative")
    counts: dict[tuple[int, int, int, tuple[str, ...]], float] = {}
    for (cpu, _memory, gpus, milli, models, replicas), times in (kinds or job_kinds(jobs)).items():
        if not include_cpu_only and not (gpus or milli):
            continue
        weight = 1.0
        if gpu_weight and gpus:
            weight += gpus * gpu_weight
        key = (cpu, gpus if gpus else (1 if milli else 0), MILLI if gpus else milli, tuple(sorted(models)))
        counts[key] = counts.get(key, 0.0) + weight * replicas * times
    if not counts:
        return _workload([], [], model_names)
    total = sum(counts.values())
    # Decreasing count; ties by the reverse of upstream's PodResource order (cpu, milli, gpus, type).
    ranked = sorted(counts, key=lambda k: "|".join(k[3]), reverse=True)
    ranked.sort(key=lambda k: (-counts[k], -k[0], -k[2], -k[1]))
    kept, cumulative = [], 0.0
    for key in ranked:
        if cumulative >= popularity * total - 1e-9:
            break
        kept.append(key)
        cumulative += counts[key]
    return _workload(kept, [counts[k] / cumulative for k in kept], model_names)


def job_kinds(jobs: Iterable[Job]) -> Counter[JobKind]:
    """How many jobs there are of each (cpu, memory, gpus, gpu_milli, gpu_models, replicas), in order
    of first appearance: one C-level pass over the jobs (a few hundred kinds for 150,000 jobs)."""
    jobs = jobs if isinstance(jobs, tuple | list) else list(jobs)
    fields = ("cpu", "memory", "gpus", "gpu_milli", "gpu_models", "replicas")
    return Counter(zip(*(map(attrgetter(name), jobs) for name in fields), strict=True))


def _workload(keys: list, weights: list[float], model_names: tuple[str, ...]) -> Workload:
    models = np.ones((len(keys), len(model_names)), dtype=bool)
    for i, key in enumerate(keys):
        if key[3]:
            models[i] = [m in key[3] for m in model_names]
    return Workload(
        np.array([k[0] for k in keys], dtype=np.int64),
        np.array([k[1] for k in keys], dtype=np.int64),
        np.array([k[2] for k in keys], dtype=np.int64),
        models,
        np.array(weights, dtype=np.float64),
    )
