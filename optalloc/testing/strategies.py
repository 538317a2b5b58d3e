"""Hypothesis strategies for optalloc: nodes, clusters, jobs, problems and allocations.

Use them in your own property-based tests::

    from hypothesis import given
    from optalloc.testing import strategies as ost

    @given(ost.problems(max_jobs=6, feasible=True))
    def test_my_scheduler_places_every_job_of_a_feasible_problem(problem): ...

Every strategy takes keyword-only arguments, validated when the strategy is built (a bad one raises
:class:`hypothesis.errors.InvalidArgument` at once, not at the first draw). Defaults are small —
a few nodes, a few jobs, round quantities — so that failures shrink to readable counterexamples.

Quantities are the core's canonical integers: CPU in milli-cores (nodes in whole cores, jobs in
quarters of a core), memory in MiB (nodes in GiB, jobs in 512 MiB steps), GPU memory in MiB per
GPU, GPU shares in milli-GPU.

Job *kinds* (``kinds=``) say what a replica asks of GPUs: ``cpu-only``, ``whole-gpu`` (1..max_gpus
whole GPUs) or ``gpu-share`` (a share of one GPU). Job *features* (``features=``) switch on what
else may vary: ``gang`` (several replicas, all or none), ``elastic`` (a ``min_replicas`` below
``replicas``), ``gpu-models`` (allowed GPU models), ``node-selector`` (a ``zone`` label), ``pack``,
``spread`` and ``single-node`` placements, ``priority`` (0..2), ``arrival`` (0..100 s),
``duration`` (1..3600 s or unknown) and ``gpu-memory`` (MiB needed per GPU). Node *features* are
``gpu-memory`` (MiB per GPU stated) and ``labels`` (a ``zone`` label).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import hypothesis.strategies as st
from hypothesis import reject
from hypothesis.errors import InvalidArgument

from optalloc.core import (
    Allocation,
    Job,
    Kind,
    Node,
    ObjectiveWeights,
    Placement,
    PlacementRule,
    Problem,
    Reason,
    Status,
    Unplaced,
)
from optalloc.testing import _ledger as L
from optalloc.testing._ledger import Choice, Ledger, least

__all__ = [
    "GPU_MODELS",
    "JOB_FEATURES",
    "JOB_KINDS",
    "NODE_FEATURES",
    "ZONES",
    "BrokenAllocation",
    "allocations",
    "clusters",
    "jobs",
    "nodes",
    "problems",
]

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


# Allocations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokenAllocation:
    """An allocation that breaks exactly one rule: ``verify`` reports violations of ``kind`` only.

    ``job`` and ``node`` name what was broken when one job or node is at fault; ``detail`` says how.
    """

    allocation: Allocation
    kind: Kind
    job: str | None = None
    node: str | None = None
    detail: str = ""


def allocations(
    problem: Problem, *, valid: bool = True, kinds: Collection[Kind | str] | None = None
) -> st.SearchStrategy[Allocation] | st.SearchStrategy[BrokenAllocation]:
    """Allocations of ``problem``, built here by a random greedy (never by optalloc's engines).

    ``valid=True``: an :class:`Allocation` that ``verify`` accepts — non-preemptible running jobs
    stay where they run, other jobs are placed (any replica count their gang allows) at drawn
    places where they fit, or listed as unplaced with a reason. ``problem.current`` must be valid.

    ``valid=False``: a :class:`BrokenAllocation` — a valid allocation changed to break exactly one
    rule, whose ``kind`` is the only :class:`~optalloc.core.Kind` ``verify`` reports.
    ``kinds`` limits the rules broken; a problem that offers none of them is rejected (some kinds
    need a suitable problem: ``gang`` a placed job of ``min_replicas >= 2``, ``not preemptible`` a
    pinned running job, ...). Every problem offers ``unknown job``.
    """
    if not isinstance(problem, Problem):
        raise InvalidArgument(f"problem={problem!r} must be a Problem")
    if not isinstance(valid, bool):
        raise InvalidArgument(f"valid={valid!r} must be True or False")
    if kinds is not None and valid:
        raise InvalidArgument("kinds= only applies to valid=False")
    chosen: tuple[Kind, ...] = tuple(Kind)
    if kinds is not None:
        if isinstance(kinds, str) or not isinstance(kinds, Collection):
            raise InvalidArgument(f"kinds={kinds!r} must be a collection of optalloc.core.Kind")
        try:
            wanted = {Kind(k) for k in kinds}
        except ValueError as err:
            raise InvalidArgument(f"kinds: {err}; valid: {', '.join(k.value for k in Kind)}") from None
        missing = wanted - set(_BREAKERS)
        if missing:
            raise InvalidArgument(f"kinds: no way to break {', '.join(sorted(missing))}")
        chosen = tuple(k for k in Kind if k in wanted)
        if not chosen:
            raise InvalidArgument("kinds must name at least one Kind")
    if valid:
        return _valid_allocations(problem)
    return _broken_allocations(problem, chosen)


@st.composite
def _valid_allocations(draw: st.DrawFn, problem: Problem) -> Allocation:
    return _valid(draw, problem)


def _pinned(problem: Problem) -> set[str]:
    """Running jobs that may not be moved or stopped."""
    if problem.current is None:
        return set()
    jobs_by = {j.name: j for j in problem.jobs}
    return {name for name in problem.current.placed_jobs if name in jobs_by and not jobs_by[name].preemptible}


def _valid(draw: st.DrawFn, problem: Problem) -> Allocation:
    ledger = Ledger(problem)
    placements: list[Placement] = []
    done: set[str] = set()
    current = problem.current.by_job() if problem.current is not None else {}
    pinned = _pinned(problem)
    jobs_by = {j.name: j for j in problem.jobs}
    # Pinned jobs first (they stay whatever else happens), then the other running jobs.
    for name, places in sorted(current.items(), key=lambda item: item[0] not in pinned):
        if name not in jobs_by:
            continue
        # Pinned jobs stay; other running jobs stay too when drawn so and still valid there.
        if name in pinned or (draw(st.booleans()) and _still_fits(ledger, jobs_by[name], places)):
            for p in places:
                ledger.take_placement(p)
            placements.extend(places)
            done.add(name)
    unplaced: list[Unplaced] = []
    rest = [j for j in range(len(problem.jobs)) if problem.jobs[j].name not in done]
    for j in draw(st.permutations(rest)):
        job = problem.jobs[j]
        tried = not _sometimes(draw, 4)  # shrinks towards trying every job
        where = _place(draw, ledger, job, draw(st.integers(least(job), job.replicas))) if tried else None
        if where is None:
            reason = (
                Reason.FITS_NO_NODE
                if not problem.hostable(j)
                else (Reason.INSUFFICIENT_CAPACITY if tried else Reason.NOT_SELECTED)
            )
            unplaced.append(Unplaced(job.name, reason))
            continue
        for r, (node, gpus) in enumerate(where):
            placements.append(Placement(job.name, r, problem.nodes[node].name, gpus, job.per_gpu_milli))
    return Allocation(tuple(placements), tuple(unplaced), method="strategies.allocations", status=Status.FEASIBLE)


def _still_fits(ledger: Ledger, job: Job, places: list[Placement]) -> bool:
    """Whether ``places`` (a running job's placements) are valid on top of what ``ledger`` holds."""
    if not least(job) <= len({p.replica for p in places}) == len(places) <= job.replicas:
        return False
    hosts = {p.node for p in places}
    if job.placement is PlacementRule.SPREAD and len(hosts) < len(places):
        return False
    if job.placement is PlacementRule.SINGLE_NODE and len(hosts) > 1:
        return False
    for p in places:
        if p.node not in ledger.node_at or p.replica >= job.replicas:
            return False
        node = ledger.node_at[p.node]
        spec = ledger.problem.nodes[node]
        if p.gpu_milli != job.per_gpu_milli or len(set(p.gpus)) != len(p.gpus) or len(p.gpus) != job.gpus_used:
            return False
        if any(not 0 <= g < spec.gpus for g in p.gpus) or not ledger.node_allows(job, node, (L.CPU, L.MEMORY)):
            return False
    for p in places:
        ledger.take_placement(p)
    ok = not ledger.broken()
    for p in places:
        ledger.take_placement(p, sign=-1)
    return ok


@st.composite
def _broken_allocations(draw: st.DrawFn, problem: Problem, kinds: tuple[Kind, ...]) -> BrokenAllocation:
    base = _valid(draw, problem)
    start = draw(st.integers(0, len(kinds) - 1))  # then on in a cycle while a kind does not apply
    for kind in kinds[start:] + kinds[:start]:
        broken = _BREAKERS[kind](draw, problem, base)
        if broken is not None:
            return broken
    reject()
    raise AssertionError("unreachable")  # pragma: no cover - reject() raises


# How to break each rule, starting from a valid allocation ---------------------------------------
_Breaker = Callable[[st.DrawFn, Problem, Allocation], "BrokenAllocation | None"]


def _alloc(placements: list[Placement], unplaced: list[Unplaced]) -> Allocation:
    return Allocation(
        tuple(placements), tuple(unplaced), method="strategies.allocations(valid=False)", status=Status.FEASIBLE
    )


def _ghost(taken: Collection[str], stem: str) -> str:
    name = stem
    while name in taken:
        name += "-x"
    return name


def _pick(draw: st.DrawFn, items: list[Any]) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


def _break_unknown_job(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    ghost = _ghost(problem.job_index, "ghost-job")
    placements, unplaced = list(base.placements), list(base.unplaced)
    placed = bool(problem.nodes) and draw(st.booleans())
    if placed:
        node = _pick(draw, list(problem.nodes)).name
        placements.append(Placement(ghost, 0, node))
        return BrokenAllocation(_alloc(placements, unplaced), Kind.UNKNOWN_JOB, ghost, node, "placed")
    unplaced.append(Unplaced(ghost, Reason.NOT_SELECTED))
    return BrokenAllocation(_alloc(placements, unplaced), Kind.UNKNOWN_JOB, ghost, None, "listed as unplaced")


def _break_unknown_node(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    pinned = _pinned(problem)
    candidates = [j for j in problem.jobs if j.name not in pinned]
    if not candidates:
        return None
    job = _pick(draw, candidates)
    ghost = _ghost(problem.node_index, "ghost-node")
    placements = [*base.placements, Placement(job.name, 0, ghost)]
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.UNKNOWN_NODE, job.name, ghost)


def _break_replica_range(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    if not base.placements:
        return None
    k = draw(st.integers(0, len(base.placements) - 1))
    p = base.placements[k]
    out_of_range = problem.jobs[problem.job_index[p.job]].replicas
    placements = list(base.placements)
    placements[k] = dataclasses.replace(p, replica=out_of_range)
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.REPLICA_RANGE, p.job, p.node)


def _break_duplicate_replica(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    by_job = base.by_job()
    pinned = _pinned(problem)
    placements = list(base.placements)
    # Renumber a replica of a job placed above its minimum: still enough distinct replicas.
    renumber = [
        name for name, ps in by_job.items() if len(ps) >= 2 and len(ps) > least(problem.jobs[problem.job_index[name]])
    ]
    # Or place a copy of a replica where one more fits (only jobs that may move).
    ledger = Ledger(problem)
    for p in placements:
        ledger.take_placement(p)
    copies: list[tuple[str, Choice]] = []
    for name, ps in by_job.items():
        if name in pinned:
            continue
        job = problem.jobs[problem.job_index[name]]
        hosts = [ledger.node_at[p.node] for p in ps]
        acc: list[Choice] = [(n, ()) for n in hosts]
        copies.extend((name, c) for c in ledger.replica_choices(job, symmetric=False) if _rules_ok(job, acc, c[0]))
    ways = (["renumber"] if renumber else []) + (["copy"] if copies else [])
    if not ways:
        return None
    if draw(st.sampled_from(ways)) == "renumber":
        name = _pick(draw, renumber)
        first, second = (placements.index(p) for p in by_job[name][:2])
        placements[second] = dataclasses.replace(placements[second], replica=placements[first].replica)
        node = placements[second].node
    else:
        name, (n, gpus) = _pick(draw, copies)
        original = by_job[name][0]
        node = problem.nodes[n].name
        placements.append(Placement(name, original.replica, node, gpus, original.gpu_milli))
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.DUPLICATE_REPLICA, name, node)


def _movable_placed(problem: Problem, base: Allocation) -> list[str]:
    pinned = _pinned(problem)
    return sorted(name for name in base.placed_jobs if name not in pinned)


def _break_duplicate_unplaced(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    candidates = sorted(base.unplaced_jobs) + _movable_placed(problem, base)
    if not candidates:
        return None
    name = _pick(draw, candidates)
    placements = [p for p in base.placements if p.job != name]
    unplaced = [u for u in base.unplaced if u.job != name] + [Unplaced(name, Reason.NOT_SELECTED)] * 2
    return BrokenAllocation(_alloc(placements, unplaced), Kind.DUPLICATE_UNPLACED, name)


def _break_placed_and_unplaced(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    if not base.placements:
        return None
    name = _pick(draw, sorted(base.placed_jobs))
    unplaced = [*base.unplaced, Unplaced(name, Reason.NOT_SELECTED)]
    return BrokenAllocation(_alloc(list(base.placements), unplaced), Kind.PLACED_AND_UNPLACED, name)


def _break_missing_job(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    candidates = sorted(base.unplaced_jobs) + _movable_placed(problem, base)
    if not candidates:
        return None
    name = _pick(draw, candidates)
    placements = [p for p in base.placements if p.job != name]
    unplaced = [u for u in base.unplaced if u.job != name]
    return BrokenAllocation(_alloc(placements, unplaced), Kind.MISSING_JOB, name)


def _break_gpu_index(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    pinned = _pinned(problem)  # a pinned job rebound to other GPUs would also break "not preemptible"
    candidates = [k for k, p in enumerate(base.placements) if p.gpus and p.job not in pinned]
    if not candidates:
        return None
    k = _pick(draw, candidates)
    p = base.placements[k]
    gpus = list(p.gpus)
    gpus[draw(st.integers(0, len(gpus) - 1))] = problem.nodes[problem.node_index[p.node]].gpus
    placements = list(base.placements)
    placements[k] = dataclasses.replace(p, gpus=tuple(gpus))
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.GPU_INDEX, p.job, p.node)


def _break_gpu_shape(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    if not base.placements:
        return None
    k = draw(st.integers(0, len(base.placements) - 1))
    p = base.placements[k]
    want = problem.jobs[problem.job_index[p.job]].per_gpu_milli
    wrong = {0: 1, 1000: 500, 999: 998}.get(want, want + 1)
    placements = list(base.placements)
    placements[k] = dataclasses.replace(p, gpu_milli=wrong)
    detail = f"gpu_milli {wrong} instead of {want}"
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.GPU_SHAPE, p.job, p.node, detail)


def _break_gang(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    by_job = base.by_job()
    candidates = [n for n in _movable_placed(problem, base) if least(problem.jobs[problem.job_index[n]]) >= 2]
    if not candidates:
        return None
    name = _pick(draw, candidates)
    keep = draw(st.integers(1, least(problem.jobs[problem.job_index[name]]) - 1))
    dropped = by_job[name][keep:]
    placements = [p for p in base.placements if p not in dropped]
    return BrokenAllocation(_alloc(placements, list(base.unplaced)), Kind.GANG, name)


def _break_not_preemptible(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
    candidates = sorted(_pinned(problem) & base.placed_jobs)
    if not candidates:
        return None
    name = _pick(draw, candidates)
    placements = [p for p in base.placements if p.job != name]
    unplaced = [*base.unplaced, Unplaced(name, Reason.NOT_SELECTED)]
    return BrokenAllocation(_alloc(placements, unplaced), Kind.NOT_PREEMPTIBLE, name, detail="stopped")


_RELAXED: dict[Kind, str] = {
    Kind.CPU: L.CPU,
    Kind.MEMORY: L.MEMORY,
    Kind.GPU_EXCLUSIVE: L.GPU_EXCLUSIVE,
    Kind.GPU_SHARE: L.GPU_SHARE,
    Kind.GPU_MEMORY: L.GPU_MEMORY,
    Kind.GPU_MODEL: L.GPU_MODEL,
    Kind.NODE_SELECTOR: L.NODE_SELECTOR,
    Kind.SPREAD: L.SPREAD,
    Kind.SINGLE_NODE: L.SINGLE_NODE,
}

_SEARCH_LIMIT = 400  # assignments examined per job when looking for a way to break a rule


def _relevant(rule: str, job: Job) -> bool:
    return {
        L.CPU: job.cpu > 0,
        L.MEMORY: job.memory > 0,
        L.GPU_EXCLUSIVE: job.gpus_used > 0,
        L.GPU_SHARE: job.gpu_milli > 0,
        L.GPU_MEMORY: job.gpus_used > 0 and job.gpu_memory > 0,
        L.GPU_MODEL: job.gpus_used > 0 and bool(job.gpu_models),
        L.NODE_SELECTOR: bool(job.node_selector),
        L.SPREAD: job.placement is PlacementRule.SPREAD and job.replicas > 1,
        L.SINGLE_NODE: job.placement is PlacementRule.SINGLE_NODE and job.replicas > 1,
    }[rule]


def _breaks(rule: str, ledger: Ledger, job: Job, assignment: list[Choice]) -> bool:
    """Whether placing ``assignment`` (booked in ``ledger``) breaks ``rule``."""
    hosts = [ledger.problem.nodes[n] for n, _ in assignment]
    if rule == L.GPU_MODEL:
        return any(h.gpu_model not in job.gpu_models for h in hosts)
    if rule == L.NODE_SELECTOR:
        return any(any(h.labels.get(k) != v for k, v in job.node_selector.items()) for h in hosts)
    if rule == L.SPREAD:
        return len({h.name for h in hosts}) < len(hosts)
    if rule == L.SINGLE_NODE:
        return len({h.name for h in hosts}) > 1
    return rule in ledger.broken()


def _relaxed_breaker(kind: Kind) -> _Breaker:
    rule = _RELAXED[kind]

    def breaker(draw: st.DrawFn, problem: Problem, base: Allocation) -> BrokenAllocation | None:
        pinned = _pinned(problem)
        candidates = [j for j in problem.jobs if j.name not in pinned and _relevant(rule, j)]
        for job in draw(st.permutations(candidates)) if candidates else ():
            rest = [p for p in base.placements if p.job != job.name]
            ledger = Ledger(problem)
            for p in rest:
                ledger.take_placement(p)
            hits = list(islice(_breaking(ledger, job, rule), 24))
            if not hits:
                continue
            assignment = _pick(draw, hits)
            placements = rest + [
                Placement(job.name, r, problem.nodes[n].name, gpus, job.per_gpu_milli)
                for r, (n, gpus) in enumerate(assignment)
            ]
            unplaced = [u for u in base.unplaced if u.job != job.name]
            node = problem.nodes[assignment[0][0]].name
            return BrokenAllocation(_alloc(placements, unplaced), kind, job.name, node, f"{rule} relaxed")
        return None

    breaker.__name__ = f"_break_{rule.replace('-', '_')}"
    return breaker


def _breaking(ledger: Ledger, job: Job, rule: str) -> Iterator[list[Choice]]:
    for count in range(least(job), job.replicas + 1):
        tried = islice(ledger.assignments(job, count, (rule,), symmetric=False), _SEARCH_LIMIT)
        for assignment in tried:
            if _breaks(rule, ledger, job, assignment):
                yield assignment


_BREAKERS: dict[Kind, _Breaker] = {
    Kind.UNKNOWN_JOB: _break_unknown_job,
    Kind.UNKNOWN_NODE: _break_unknown_node,
    Kind.REPLICA_RANGE: _break_replica_range,
    Kind.DUPLICATE_REPLICA: _break_duplicate_replica,
    Kind.DUPLICATE_UNPLACED: _break_duplicate_unplaced,
    Kind.PLACED_AND_UNPLACED: _break_placed_and_unplaced,
    Kind.MISSING_JOB: _break_missing_job,
    Kind.GPU_INDEX: _break_gpu_index,
    Kind.GPU_SHAPE: _break_gpu_shape,
    Kind.GANG: _break_gang,
    Kind.NOT_PREEMPTIBLE: _break_not_preemptible,
    **{kind: _relaxed_breaker(kind) for kind in _RELAXED},
}
