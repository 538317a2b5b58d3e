"""A problem: nodes, jobs, what runs now, and the objective's weights; with its numpy views."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, wraps
from typing import Any

import numpy as np

from optalloc.core.allocation import Allocation, Status
from optalloc.core.errors import ProblemError
from optalloc.core.job import Job
from optalloc.core.limits import LIMITS
from optalloc.core.node import Node
from optalloc.core.objective import ObjectiveWeights

# Columns of the capacity and demand matrices.
CPU, MEMORY, GPU = 0, 1, 2
RESOURCES = ("cpu", "memory", "gpu_milli")


def _array_view(build: Callable[[Problem], np.ndarray]) -> cached_property[np.ndarray]:
    """A numpy view of the problem, built once on first use and read-only: the problem is frozen, and
    every engine shares the same arrays, so a caller that wants to change one works on a copy
    (``problem.capacity.copy()``); writing into the view raises ``ValueError: assignment destination
    is read-only`` instead of silently changing the problem for everyone."""

    @wraps(build)
    def frozen(self: Problem) -> np.ndarray:
        array = build(self)
        array.setflags(write=False)
        return array

    return cached_property(frozen)


@dataclass(frozen=True, eq=False)
class Problem:
    """Nodes + jobs + the current allocation (what runs now) + objective weights.

    ``gpu_models`` is the catalogue of GPU model names jobs may ask for; by default the models of
    the nodes. Name one a job asks for that is not in it and construction fails (a typo); keep a
    model in it after removing its nodes (a what-if) and such jobs are simply unplaceable.

    The numpy views (``capacity``, ``demand``, ``replica_value``, ...) are built once, on first use,
    and are read-only (copy one to change it).
    """

    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]
    current: Allocation | None = None
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    gpu_models: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "nodes", _tuple_of("nodes", self.nodes, Node))
        _set(self, "jobs", _tuple_of("jobs", self.jobs, Job))
        _within_limits(self.nodes, self.jobs)
        _unique("nodes", self.nodes)
        _unique("jobs", self.jobs)
        node_models = frozenset(n.gpu_model for n in self.nodes if n.gpu_model is not None and n.gpus)
        catalogue = node_models if self.gpu_models is None else frozenset(self.gpu_models) | node_models
        _set(self, "gpu_models", catalogue)
        for i, job in enumerate(self.jobs):
            unknown = sorted(job.gpu_models - catalogue)
            if unknown:
                known = ", ".join(sorted(catalogue)) or "none"
                raise ProblemError(
                    f"jobs[{i}].gpu_models", unknown[0], f"is not a GPU model of this cluster (known: {known})"
                )
        if not isinstance(self.weights, ObjectiveWeights):
            raise ProblemError("weights", self.weights, "is not an ObjectiveWeights")
        if self.current is not None:
            self._check_current()

    def _check_current(self) -> None:
        current = self.current
        if not isinstance(current, Allocation):
            raise ProblemError("current", current, "is not an Allocation")
        nodes, jobs = self.node_index, self.job_index
        for i, p in enumerate(current.placements):
            if p.job not in jobs:
                raise ProblemError(f"current.placements[{i}].job", p.job, "is not a job of this problem")
            if p.node not in nodes:
                raise ProblemError(f"current.placements[{i}].node", p.node, "is not a node of this problem")

    # Construction helpers ------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled (a part sent to a worker or a Ray task): numpy restores arrays writable, so the views
        # that travelled with the problem are made read-only again.
        self.__dict__.update(state)
        for value in (*state.values(), *state.get("_allowed_cache", {}).values()):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    def replace(self, **changes: Any) -> Problem:
        """A new problem with some fields changed (validated again, views rebuilt)."""
        if "gpu_models" not in changes:
            changes["gpu_models"] = self.gpu_models
        return replace(self, **changes)

    def subset(self, nodes: Sequence[int] | np.ndarray, jobs: Sequence[int] | np.ndarray) -> Problem:
        """The problem of some of this problem's nodes and jobs (positions, ascending), with what runs now
        of those jobs, the same weights and the same catalogue of GPU models.

        Not validated again field by field (its nodes and jobs were valid here, and a subset of unique
        names is unique): the fast path for a partition of a large problem (``optalloc.pop``), where
        building each part with ``Problem(...)`` would check 100,000 jobs again. Only the positions are
        checked (in range, ascending), and what runs now: a running job of the subset must run on nodes of
        the subset (else :class:`ProblemError`). The row-wise numpy views this problem has already built
        (``capacity``, ``demand``, ...) are shared, sliced: the subset does not build them again.
        """
        node_rows = _positions("nodes", nodes, len(self.nodes))
        job_rows = _positions("jobs", jobs, len(self.jobs))
        current = None
        if self.current is not None and self.current.placements:
            chosen = np.zeros(len(self.jobs), dtype=bool)
            chosen[job_rows] = True
            inside = np.zeros(len(self.nodes), dtype=bool)
            inside[node_rows] = True
            job_index, node_index = self.job_index, self.node_index
            running = tuple(p for p in self.current.placements if chosen[job_index[p.job]])
            for p in running:
                if not inside[node_index[p.node]]:
                    raise ProblemError("nodes", p.node, f"runs job {p.job!r} of the subset but is not in it")
            if running:
                current = Allocation(running, method="current", status=Status.FEASIBLE)
        out = object.__new__(type(self))
        _set = object.__setattr__
        _set(out, "nodes", tuple(self.nodes[i] for i in node_rows.tolist()))
        _set(out, "jobs", tuple(self.jobs[j] for j in job_rows.tolist()))
        _set(out, "current", current)
        _set(out, "weights", self.weights)
        _set(out, "gpu_models", self.gpu_models)
        for names, rows in ((_NODE_ROWS, node_rows), (_JOB_ROWS, job_rows)):
            for name in names:
                whole = self.__dict__.get(name)
                if whole is not None:
                    view = whole[rows]
                    view.setflags(write=False)
                    out.__dict__[name] = view
        return out

    @property
    def running_jobs(self) -> frozenset[str]:
        return self.current.placed_jobs if self.current is not None else frozenset()

    # Indices ---------------------------------------------------------------------------------
    @cached_property
    def node_index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    @cached_property
    def job_index(self) -> dict[str, int]:
        return {j.name: i for i, j in enumerate(self.jobs)}

    @cached_property
    def job_names(self) -> tuple[str, ...]:
        """The jobs' names, in the order of ``jobs``."""
        return tuple(self.job_index)

    @cached_property
    def model_names(self) -> tuple[str, ...]:
        """GPU model names in a fixed order; ``node_model`` indexes into it."""
        return tuple(sorted(self.gpu_models or ()))

    # Node views (n = number of nodes) --------------------------------------------------------
    @_array_view
    def capacity(self) -> np.ndarray:
        """int64 (n, 3): cpu milli-cores, memory MiB, GPU milli (1000 x gpus)."""
        out = np.zeros((len(self.nodes), 3), dtype=np.int64)
        for i, n in enumerate(self.nodes):
            out[i] = (n.cpu, n.memory, n.gpus * 1000)
        return out

    @_array_view
    def node_gpus(self) -> np.ndarray:
        """int64 (n,): GPUs per node."""
        return self.capacity[:, GPU] // 1000

    @_array_view
    def node_gpu_memory(self) -> np.ndarray:
        """int64 (n,): MiB per GPU (0 = not known)."""
        return np.array([n.gpu_memory for n in self.nodes], dtype=np.int64)

    @_array_view
    def node_model(self) -> np.ndarray:
        """int64 (n,): index of the node's GPU model in ``model_names``, -1 for none."""
        lookup = {m: k for k, m in enumerate(self.model_names)}
        return np.array(
            [lookup.get(n.gpu_model, -1) if n.gpus and n.gpu_model else -1 for n in self.nodes], dtype=np.int64
        )

    @cached_property
    def max_gpus(self) -> int:
        return int(self.node_gpus.max()) if self.nodes else 0

    # Job views (m = number of jobs) ----------------------------------------------------------
    @_array_view
    def demand(self) -> np.ndarray:
        """int64 (m, 3): per-replica cpu, memory, GPU milli."""
        out = np.zeros((len(self.jobs), 3), dtype=np.int64)
        for i, j in enumerate(self.jobs):
            out[i] = (j.cpu, j.memory, j.gpu_demand)
        return out

    @_array_view
    def job_gpus(self) -> np.ndarray:
        """int64 (m,): whole GPUs per replica."""
        return np.array([j.gpus for j in self.jobs], dtype=np.int64)

    @_array_view
    def job_share(self) -> np.ndarray:
        """int64 (m,): milli-GPU share of one GPU per replica (0 unless sharing)."""
        return np.array([j.gpu_milli for j in self.jobs], dtype=np.int64)

    @_array_view
    def job_gpu_memory(self) -> np.ndarray:
        return np.array([j.gpu_memory for j in self.jobs], dtype=np.int64)

    @_array_view
    def job_replicas(self) -> np.ndarray:
        return np.array([j.replicas for j in self.jobs], dtype=np.int64)

    @_array_view
    def job_min_replicas(self) -> np.ndarray:
        return np.array([j.min_replicas for j in self.jobs], dtype=np.int64)

    @_array_view
    def job_priority(self) -> np.ndarray:
        return np.array([j.priority for j in self.jobs], dtype=np.int64)

    @_array_view
    def job_arrival(self) -> np.ndarray:
        return np.array([j.arrival for j in self.jobs], dtype=np.float64)

    @_array_view
    def job_duration(self) -> np.ndarray:
        """float64 (m,): estimated duration, NaN when unknown."""
        return np.array([np.nan if j.duration is None else j.duration for j in self.jobs], dtype=np.float64)

    @_array_view
    def priority_weight(self) -> np.ndarray:
        """int64 (m,): ``priority_base ** rank(priority)``, rank among distinct levels."""
        if not self.jobs:
            return np.zeros(0, dtype=np.int64)
        levels, rank = np.unique(self.job_priority, return_inverse=True)
        base = self.weights.priority_base
        if base > 1 and len(levels) > 1 and (len(levels) - 1) * np.log10(base) > 9:
            raise ProblemError(
                "weights.priority_base",
                base,
                f"is too large for {len(levels)} priority levels (weights overflow); use a smaller base or lexicographic mode",
            )
        weights: np.ndarray = (np.int64(base) ** rank.astype(np.int64)).astype(np.int64)
        return weights

    @_array_view
    def replica_value(self) -> np.ndarray:
        """int64 (m,): objective value of one placed replica of each job."""
        gpu = self.demand[:, GPU]
        value: np.ndarray = np.where(gpu > 0, gpu, self.weights.cpu_only_value) * self.priority_weight
        return value

    # Eligibility -----------------------------------------------------------------------------
    def allowed_nodes(self, job: int | str) -> np.ndarray:
        """bool (n,): nodes that pass the job's GPU-model and node-selector constraints."""
        j = self.job_index[job] if isinstance(job, str) else job
        spec = self.jobs[j]
        key = (tuple(sorted(spec.gpu_models)) if spec.gpu_demand else (), tuple(sorted(spec.node_selector.items())))
        cache = self._allowed_cache
        if key not in cache:
            mask = np.ones(len(self.nodes), dtype=bool)
            if key[0]:
                wanted = [k for k, m in enumerate(self.model_names) if m in spec.gpu_models]
                mask &= np.isin(self.node_model, wanted)
            for label, value in key[1]:
                mask &= np.array([n.labels.get(label) == value for n in self.nodes], dtype=bool)
            mask.setflags(write=False)
            cache[key] = mask
        return cache[key]

    @cached_property
    def _allowed_cache(self) -> dict[Any, np.ndarray]:
        return {}

    def fits_empty(self, job: int | str) -> np.ndarray:
        """bool (n,): nodes that could host one replica of the job if they were empty."""
        j = self.job_index[job] if isinstance(job, str) else job
        spec = self.jobs[j]
        cap = self.capacity
        ok = self.allowed_nodes(j) & (cap[:, CPU] >= spec.cpu) & (cap[:, MEMORY] >= spec.memory)
        if spec.gpus_used:
            ok &= self.node_gpus >= spec.gpus_used
            if spec.gpu_memory:
                ok &= self.node_gpu_memory >= spec.gpu_memory
        return ok

    def hostable(self, job: int | str) -> bool:
        """Whether the whole job (``min_replicas`` replicas, its rules) fits the empty cluster."""
        j = self.job_index[job] if isinstance(job, str) else job
        spec = self.jobs[j]
        ok = self.fits_empty(j)
        need = spec.min_replicas or 1
        per = self._replicas_per_node(spec, ok)
        if spec.placement.value == "single-node":
            return bool((per >= need).any())
        if spec.placement.value == "spread":
            return int((per >= 1).sum()) >= need
        return int(per.sum()) >= need

    def _replicas_per_node(self, spec: Job, ok: np.ndarray) -> np.ndarray:
        """How many replicas of ``spec`` each allowed empty node could hold (0 where it holds none)."""
        cap = self.capacity[ok]
        need = spec.min_replicas or 1
        per = np.full(len(cap), need, dtype=np.int64)
        if spec.cpu:
            per = np.minimum(per, cap[:, CPU] // spec.cpu)
        if spec.memory:
            per = np.minimum(per, cap[:, MEMORY] // spec.memory)
        if spec.gpus:
            per = np.minimum(per, self.node_gpus[ok] // spec.gpus)
        elif spec.gpu_milli:
            sharers = np.full(len(cap), 1000 // spec.gpu_milli, dtype=np.int64)
            if spec.gpu_memory:
                sharers = np.minimum(sharers, self.node_gpu_memory[ok] // spec.gpu_memory)
            per = np.minimum(per, self.node_gpus[ok] * sharers)
        out = np.zeros(len(self.nodes), dtype=np.int64)
        out[ok] = per
        return out

    def describe(self) -> dict[str, Any]:
        """Counts for logs and summaries."""
        return {
            "nodes": len(self.nodes),
            "gpus": int(self.node_gpus.sum()),
            "jobs": len(self.jobs),
            "replicas": int(self.job_replicas.sum()) if self.jobs else 0,
            "gpu_milli_requested": int((self.demand[:, GPU] * self.job_replicas).sum()) if self.jobs else 0,
            "running": len(self.running_jobs),
        }


#: The numpy views with one row per node or per job, computed row by row: a subset's are slices of the whole's.
#: (Not ``priority_weight`` or ``replica_value``: a priority's weight depends on the levels present.)
_NODE_ROWS = ("capacity", "node_gpus", "node_gpu_memory", "node_model")
_JOB_ROWS = (
    "demand",
    "job_gpus",
    "job_share",
    "job_gpu_memory",
    "job_replicas",
    "job_min_replicas",
    "job_priority",
    "job_arrival",
    "job_duration",
)


def _positions(field_name: str, rows: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """``rows`` as an int64 array of positions below ``count``, strictly ascending (so each at most once)."""
    out = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(out) and (out[0] < 0 or out[-1] >= count or not bool(np.all(out[1:] > out[:-1]))):
        raise ProblemError(field_name, f"{len(out)} positions", f"are not ascending positions below {count}")
    return out


def _tuple_of(field_name: str, items: Any, kind: type) -> tuple[Any, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ProblemError(field_name, items, f"is not a list of {kind.__name__}")
    out = tuple(items)
    for i, item in enumerate(out):
        if not isinstance(item, kind):
            raise ProblemError(f"{field_name}[{i}]", item, f"is not a {kind.__name__}")
    return out


def _within_limits(nodes: tuple[Node, ...], jobs: tuple[Job, ...]) -> None:
    """The problem's size against :data:`~optalloc.core.limits.LIMITS`, before any view is built."""
    for field_name, count, limit in (("nodes", len(nodes), LIMITS.nodes), ("jobs", len(jobs), LIMITS.jobs)):
        if count > limit:
            raise ProblemError(field_name, count, f"{field_name} are more than the limit of {limit:,} (docs/limits.md)")
    replicas = sum(j.replicas for j in jobs)
    if replicas > LIMITS.total_replicas:
        raise ProblemError(
            "jobs", replicas, f"replicas in all are more than the limit of {LIMITS.total_replicas:,} (docs/limits.md)"
        )


def _unique(field_name: str, items: tuple[Any, ...]) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in seen:
            raise ProblemError(f"{field_name}[{i}].name", item.name, f"duplicates {field_name}[{seen[item.name]}]")
        seen[item.name] = i
