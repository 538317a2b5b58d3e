"""Strategies for nodes, clusters, jobs and problems (public through ``optalloc.testing.strategies``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis.errors import InvalidArgument

from optalloc.core import (
    Allocation,
    Job,
    Node,
    ObjectiveWeights,
    Placement,
    PlacementRule,
    Problem,
    Status,
)
from optalloc.testing._ledger import Choice, Ledger, least

GPU_MODELS: tuple[str, ...] = ("A100", "T4")
"""GPU models drawn by default (node models, and the models a job may ask for)."""
ZONES: tuple[str, ...] = ("a", "b")
"""Values of the ``zone`` label on nodes and in node selectors."""
JOB_KINDS: tuple[str, ...] = ("cpu-only", "whole-gpu", "gpu-share")
JOB_FEATURES: tuple[str, ...] = (
    "gang",
    "elastic",
    "gpu-models",
    "node-selector",
    "pack",
    "spread",
    "single-node",
    "priority",
    "arrival",
    "duration",
    "gpu-memory",
)
NODE_FEATURES: tuple[str, ...] = ("gpu-memory", "labels")

_SHARES = (500, 250, 750, 100, 300, 900)  # common milli-GPU shares; any 1..999 may be drawn too
_NODE_GPU_MEMORY = (16384, 32768, 0)  # MiB per GPU (0 = not stated)
_JOB_GPU_MEMORY = (8192, 16384, 24576)  # MiB per GPU
_ABSENT_MODEL = "absent-model"  # a catalogue model no node has (for unplaceable jobs)


def _sometimes(draw: st.DrawFn, one_in: int) -> bool:
    """True once in ``one_in`` draws; shrinks to False."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


# Argument validation --------------------------------------------------------------------------
def _integer(name: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name}={value!r} must be an integer")
    if value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be at least {minimum}")
    return value


def _range(low_name: str, low: Any, high_name: str, high: Any, *, minimum: int = 0) -> None:
    _integer(low_name, low, minimum=minimum)
    _integer(high_name, high, minimum=minimum)
    if low > high:
        raise InvalidArgument(f"{low_name}={low!r} is above {high_name}={high!r}")


def _choices(name: str, value: Any, valid: tuple[str, ...], *, nonempty: bool = False) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Collection):
        raise InvalidArgument(f"{name}={value!r} must be a collection of names from {', '.join(valid)}")
    unknown = sorted(str(v) for v in value if v not in valid)
    if unknown:
        raise InvalidArgument(f"{name}: {', '.join(unknown)} not in {', '.join(valid)}")
    if nonempty and not value:
        raise InvalidArgument(f"{name} must name at least one of {', '.join(valid)}")
    return frozenset(value)


def _models(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Collection):
        raise InvalidArgument(f"gpu_models={value!r} must be a collection of GPU model names")
    for model in value:
        if not isinstance(model, str) or not model.strip() or "|" in model:
            raise InvalidArgument(f"gpu_models: {model!r} is not a GPU model name")
    return tuple(dict.fromkeys(value))


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name}={value!r} must be a non-empty string")
    return value


# Nodes and clusters ---------------------------------------------------------------------------
def nodes(
    *,
    name: str = "n0",
    min_gpus: int = 0,
    max_gpus: int = 4,
    gpu_models: Collection[str] = GPU_MODELS,
    max_cpu: int = 16000,
    max_memory: int = 65536,
    features: Collection[str] = NODE_FEATURES,
) -> st.SearchStrategy[Node]:
    """One :class:`Node` called ``name``.

    CPU: 1..``max_cpu`` milli-cores in whole cores; memory: 1..``max_memory`` MiB in GiB;
    ``min_gpus``..``max_gpus`` GPUs of a model drawn from ``gpu_models`` (no model when empty).
    ``features``: ``gpu-memory`` states 16 or 32 GiB per GPU (or leaves it unknown), ``labels``
    may set a ``zone`` label from :data:`ZONES`.
    """
    _name("name", name)
    _range("min_gpus", min_gpus, "max_gpus", max_gpus)
    models = _models(gpu_models)
    _integer("max_cpu", max_cpu, minimum=1000)
    _integer("max_memory", max_memory, minimum=1024)
    feats = _choices("features", features, NODE_FEATURES)
    return _nodes(name, min_gpus, max_gpus, models, max_cpu, max_memory, feats)


@st.composite
def _nodes(
    draw: st.DrawFn,
    name: str,
    min_gpus: int,
    max_gpus: int,
    models: tuple[str, ...],
    max_cpu: int,
    max_memory: int,
    features: frozenset[str],
) -> Node:
    gpus = draw(st.integers(min_gpus, max_gpus))
    return Node(
        name,
        cpu=draw(st.integers(1, max_cpu // 1000)) * 1000,
        memory=draw(st.integers(1, max_memory // 1024)) * 1024,
        gpus=gpus,
        gpu_model=draw(st.sampled_from(models)) if gpus and models else None,
        gpu_memory=draw(st.sampled_from(_NODE_GPU_MEMORY)) if gpus and "gpu-memory" in features else 0,
        labels={"zone": draw(st.sampled_from(ZONES))} if "labels" in features and draw(st.booleans()) else {},
    )


def clusters(
    *,
    min_nodes: int = 1,
    max_nodes: int = 4,
    min_gpus: int = 0,
    max_gpus: int = 4,
    gpu_models: Collection[str] = GPU_MODELS,
    max_cpu: int = 16000,
    max_memory: int = 65536,
    features: Collection[str] = NODE_FEATURES,
) -> st.SearchStrategy[tuple[Node, ...]]:
    """A tuple of ``min_nodes``..``max_nodes`` nodes named ``n0``, ``n1``, ...

    Nodes are drawn from a small pool of shapes, so identical nodes are common (as in real
    clusters, and as the engines' compression expects). Other arguments as in :func:`nodes`.
    """
    _range("min_nodes", min_nodes, "max_nodes", max_nodes)
    shape = nodes(
        min_gpus=min_gpus,
        max_gpus=max_gpus,
        gpu_models=gpu_models,
        max_cpu=max_cpu,
        max_memory=max_memory,
        features=features,
    )
    return _clusters(min_nodes, max_nodes, shape)


@st.composite
def _clusters(draw: st.DrawFn, min_nodes: int, max_nodes: int, shape: st.SearchStrategy[Node]) -> tuple[Node, ...]:
    count = draw(st.integers(min_nodes, max_nodes))
    if not count:
        return ()
    pool = [draw(shape) for _ in range(draw(st.integers(1, count)))]
    return tuple(dataclasses.replace(draw(st.sampled_from(pool)), name=f"n{i}") for i in range(count))


# Jobs -------------------------------------------------------------------------------------------
def jobs(
    *,
    name: str = "j0",
    kinds: Collection[str] = JOB_KINDS,
    features: Collection[str] = JOB_FEATURES,
    gpu_models: Collection[str] = GPU_MODELS,
    max_replicas: int = 3,
    max_gpus: int = 4,
    max_cpu: int = 4000,
    max_memory: int = 16384,
) -> st.SearchStrategy[Job]:
    """One :class:`Job` called ``name``.

    Per replica: 0..``max_cpu`` milli-cores (quarter cores), 0..``max_memory`` MiB (512 MiB
    steps), and by ``kinds``: nothing of GPUs, 1..``max_gpus`` whole GPUs, or a 1..999 milli share
    of one GPU. ``features`` (see the module docstring) switch on gangs of up to
    ``max_replicas`` replicas, elasticity, allowed GPU models (a non-empty subset of
    ``gpu_models``), a ``zone`` node selector, pack/spread/single-node placement, priorities,
    arrival times, durations and GPU memory. Jobs are preemptible (``problems(with_running=True)``
    pins some).
    """
    _name("name", name)
    kind_set = _choices("kinds", kinds, JOB_KINDS, nonempty=True)
    feats = _choices("features", features, JOB_FEATURES)
    models = _models(gpu_models)
    _integer("max_replicas", max_replicas, minimum=1)
    _integer("max_gpus", max_gpus, minimum=1)
    _integer("max_cpu", max_cpu)
    _integer("max_memory", max_memory)
    ordered = tuple(k for k in JOB_KINDS if k in kind_set)
    return _jobs(name, ordered, feats, models, max_replicas, max_gpus, max_cpu, max_memory)


@st.composite
def _jobs(
    draw: st.DrawFn,
    name: str,
    kinds: tuple[str, ...],
    features: frozenset[str],
    models: tuple[str, ...],
    max_replicas: int,
    max_gpus: int,
    max_cpu: int,
    max_memory: int,
) -> Job:
    kind = draw(st.sampled_from(kinds))
    gpus = draw(st.integers(1, max_gpus)) if kind == "whole-gpu" else 0
    share = draw(st.sampled_from(_SHARES) | st.integers(1, 999)) if kind == "gpu-share" else 0
    uses_gpu = kind != "cpu-only"
    replicas = draw(st.integers(1, max_replicas)) if "gang" in features else 1
    elastic = "elastic" in features and replicas > 1 and draw(st.booleans())
    allowed: frozenset[str] = frozenset()
    if uses_gpu and "gpu-models" in features and models and _sometimes(draw, 3):
        allowed = draw(st.frozensets(st.sampled_from(models), min_size=1))
    rules = [PlacementRule.ANY] + [r for r in PlacementRule if r.value in features]
    return Job(
        name,
        cpu=draw(st.integers(0, max_cpu // 250)) * 250,
        memory=draw(st.integers(0, max_memory // 512)) * 512,
        gpus=gpus,
        gpu_milli=share,
        gpu_memory=draw(st.sampled_from((0, *_JOB_GPU_MEMORY))) if uses_gpu and "gpu-memory" in features else 0,
        replicas=replicas,
        min_replicas=draw(st.integers(1, replicas - 1)) if elastic else None,
        gpu_models=allowed,
        node_selector=(
            {"zone": draw(st.sampled_from(ZONES))} if "node-selector" in features and _sometimes(draw, 4) else {}
        ),
        priority=draw(st.integers(0, 2)) if "priority" in features else 0,
        arrival=float(draw(st.integers(0, 100))) if "arrival" in features else 0.0,
        duration=draw(st.none() | st.integers(1, 3600).map(float)) if "duration" in features else None,
        placement=draw(st.sampled_from(rules)),
    )


# Problems --------------------------------------------------------------------------------------
def problems(
    *,
    min_jobs: int = 0,
    max_jobs: int = 8,
    min_nodes: int = 1,
    max_nodes: int = 4,
    feasible: bool | None = None,
    with_running: bool = False,
    kinds: Collection[str] = JOB_KINDS,
    features: Collection[str] = JOB_FEATURES,
    gpu_models: Collection[str] = GPU_MODELS,
    max_replicas: int = 3,
    max_gpus: int = 4,
    weights: ObjectiveWeights | st.SearchStrategy[ObjectiveWeights] | None = None,
) -> st.SearchStrategy[Problem]:
    """A :class:`Problem`: a cluster of ``min_nodes``..``max_nodes`` nodes and up to ``max_jobs`` jobs.

    ``feasible=True``: every job can be placed at once (whole, or at least ``min_replicas``) — the
    problem is built around a witness allocation, and a drawn job that does not fit beside the
    others is dropped, so fewer than ``min_jobs`` may remain. ``feasible=False``: at least one job
    can never be placed (its demand beats every node, its selector or GPU model matches no node,
    or its gang is larger than the cluster). ``None``: anything.

    ``with_running=True`` adds a valid ``current`` allocation (what runs now) of some jobs, some of
    them not preemptible. ``kinds``, ``features``, ``gpu_models``, ``max_replicas`` and ``max_gpus``
    are passed to :func:`jobs` and :func:`clusters` (node features follow: ``gpu-memory`` and the
    ``zone`` labels appear on nodes when jobs may ask for them). ``weights``: the objective's
    :class:`ObjectiveWeights` (or a strategy of them); the defaults when None.
    """
    _range("min_jobs", min_jobs, "max_jobs", max_jobs)
    _range("min_nodes", min_nodes, "max_nodes", max_nodes)
    if feasible not in (None, True, False):
        raise InvalidArgument(f"feasible={feasible!r} must be True, False or None")
    if not isinstance(with_running, bool):
        raise InvalidArgument(f"with_running={with_running!r} must be True or False")
    if weights is None:
        weights = ObjectiveWeights()
    if isinstance(weights, ObjectiveWeights):
        weights = st.just(weights)
    elif not isinstance(weights, st.SearchStrategy):
        raise InvalidArgument(f"weights={weights!r} must be ObjectiveWeights, a strategy of them, or None")
    feats = _choices("features", features, JOB_FEATURES)
    node_feats = {f for f, j in (("gpu-memory", "gpu-memory"), ("labels", "node-selector")) if j in feats}
    cluster = clusters(
        min_nodes=min_nodes, max_nodes=max_nodes, max_gpus=max_gpus, gpu_models=gpu_models, features=node_feats
    )
    job = jobs(kinds=kinds, features=feats, gpu_models=gpu_models, max_replicas=max_replicas, max_gpus=max_gpus)
    spec = _ProblemSpec(
        min_jobs,
        max_jobs,
        feasible,
        with_running,
        frozenset(kinds),
        feats,
        _models(gpu_models),
        max_replicas,
        max_gpus,
    )
    return _problems(cluster, job, weights, spec)


@dataclass(frozen=True)
class _ProblemSpec:
    min_jobs: int
    max_jobs: int
    feasible: bool | None
    with_running: bool
    kinds: frozenset[str]
    features: frozenset[str]
    gpu_models: tuple[str, ...]
    max_replicas: int
    max_gpus: int


@st.composite
def _problems(
    draw: st.DrawFn,
    cluster: st.SearchStrategy[tuple[Node, ...]],
    job_strategy: st.SearchStrategy[Job],
    weights: st.SearchStrategy[ObjectiveWeights],
    spec: _ProblemSpec,
) -> Problem:
    node_list = draw(cluster)
    catalogue = set(spec.gpu_models)
    base = Problem(node_list, (), gpu_models=frozenset(catalogue))
    ledger = Ledger(base)
    job_list: list[Job] = []
    witness: dict[str, list[Choice]] = {}
    for k in range(draw(st.integers(spec.min_jobs, spec.max_jobs))):
        job = dataclasses.replace(draw(job_strategy), name=f"j{k}")
        if spec.feasible:
            # Keep the job only if it fits beside the others: the witness proves feasibility.
            for count in dict.fromkeys((job.replicas, least(job))):
                placed = _place(draw, ledger, job, count)
                if placed is not None:
                    witness[job.name] = placed
                    job_list.append(job)
                    break
        else:
            job_list.append(job)
    if spec.feasible is False:
        bad, extra_model = _unplaceable(draw, node_list, spec, f"j{len(job_list)}")
        job_list.insert(draw(st.integers(0, len(job_list))), bad)
        if extra_model:
            catalogue.add(extra_model)
    current = None
    if spec.with_running:
        job_list, current = _running(draw, base, job_list, witness)
    problem = Problem(tuple(node_list), tuple(job_list), current, draw(weights), gpu_models=frozenset(catalogue))
    return problem


def _rules_ok(job: Job, acc: list[Choice], node: int) -> bool:
    if job.placement is PlacementRule.SPREAD:
        return all(n != node for n, _ in acc)
    if job.placement is PlacementRule.SINGLE_NODE:
        return not acc or acc[0][0] == node
    return True


def _place(draw: st.DrawFn, ledger: Ledger, job: Job, count: int) -> list[Choice] | None:
    """Place ``count`` replicas of ``job`` at drawn places where they fit (booked), or None (nothing booked)."""
    acc: list[Choice] = []
    for _ in range(count):
        options = [c for c in ledger.replica_choices(job, symmetric=False) if _rules_ok(job, acc, c[0])]
        if not options:
            for node, gpus in acc:
                ledger.give(job, node, gpus)
            return None
        pick = options[draw(st.integers(0, len(options) - 1))]
        ledger.take(job, *pick)
        acc.append(pick)
    return acc


def _unplaceable(draw: st.DrawFn, node_list: tuple[Node, ...], spec: _ProblemSpec, name: str) -> tuple[Job, str | None]:
    """A job no allocation can place, and a GPU model to add to the catalogue (or None)."""
    job = draw(
        jobs(
            name=name,
            kinds=spec.kinds,
            features=spec.features,
            gpu_models=spec.gpu_models,
            max_replicas=spec.max_replicas,
            max_gpus=spec.max_gpus,
        )
    )
    job = dataclasses.replace(job, min_replicas=None)
    max_cpu = max((n.cpu for n in node_list), default=0)
    max_mem = max((n.memory for n in node_list), default=0)
    max_gpus = max((n.gpus for n in node_list), default=0)
    total_gpus = sum(n.gpus for n in node_list)
    ways = ["cpu", "memory"]
    if "whole-gpu" in spec.kinds:
        ways.append("gpus")
        if "gang" in spec.features and total_gpus + 1 <= spec.max_replicas * spec.max_gpus:
            ways.append("gang")
    if "node-selector" in spec.features:
        ways.append("selector")
    if "gpu-models" in spec.features and spec.kinds - {"cpu-only"}:
        ways.append("model")
    if "spread" in spec.features and len(node_list) + 1 <= spec.max_replicas:
        ways.append("spread")
    way = draw(st.sampled_from(ways))
    if way == "cpu":
        return dataclasses.replace(job, cpu=max_cpu + 250), None
    if way == "memory":
        return dataclasses.replace(job, memory=max_mem + 512), None
    if way == "gpus":
        return dataclasses.replace(job, gpus=max_gpus + 1, gpu_milli=0), None
    if way == "gang":
        replicas = draw(st.integers(1, spec.max_replicas).filter(lambda r: r * spec.max_gpus > total_gpus))
        gpus = draw(st.integers(total_gpus // replicas + 1, spec.max_gpus))
        return dataclasses.replace(job, gpus=gpus, gpu_milli=0, replicas=replicas, min_replicas=None), None
    if way == "selector":
        return dataclasses.replace(job, node_selector={"zone": "nowhere"}), None
    if way == "model":
        whole = "whole-gpu" in spec.kinds and (job.gpus or "gpu-share" not in spec.kinds)
        gpus, share = (job.gpus or 1, 0) if whole else (0, job.gpu_milli or 500)
        model = _ABSENT_MODEL
        while model in spec.gpu_models:
            model += "-x"
        return dataclasses.replace(job, gpus=gpus, gpu_milli=share, gpu_models=frozenset({model})), model
    replicas = draw(st.integers(len(node_list) + 1, spec.max_replicas))
    return dataclasses.replace(job, replicas=replicas, min_replicas=None, placement=PlacementRule.SPREAD), None


def _running(
    draw: st.DrawFn, base: Problem, job_list: list[Job], witness: dict[str, list[Choice]]
) -> tuple[list[Job], Allocation]:
    """Pick running jobs and where they run (valid together); pin some (not preemptible)."""
    ledger = Ledger(base)
    placements: list[Placement] = []
    out = list(job_list)
    for k, job in enumerate(job_list):
        if not draw(st.booleans()):
            continue
        if job.name in witness:
            where: list[Choice] | None = witness[job.name]
        else:
            where = _place(draw, ledger, job, draw(st.integers(least(job), job.replicas)))
        if not where:
            continue
        for r, (node, gpus) in enumerate(where):
            placements.append(Placement(job.name, r, base.nodes[node].name, gpus, job.per_gpu_milli))
        if not draw(st.booleans()):
            out[k] = dataclasses.replace(job, preemptible=False)
    return out, Allocation(tuple(placements), method="current", status=Status.FEASIBLE)
