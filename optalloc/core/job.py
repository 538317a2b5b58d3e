"""A job: replicas with a per-replica demand, and the rules of where they may run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from optalloc.core import _check
from optalloc.core.errors import ProblemError
from optalloc.core.limits import LIMITS

MILLI = 1000  # milli-GPU in one GPU


class PlacementRule(StrEnum):
    """Where a job's replicas may go relative to each other.

    ``any``: anywhere. ``pack``: anywhere, but fewer nodes are preferred (soft, an objective term).
    ``spread``: at most one replica per node (hard). ``single-node``: all replicas on one node (hard).
    """

    ANY = "any"
    PACK = "pack"
    SPREAD = "spread"
    SINGLE_NODE = "single-node"


@dataclass(frozen=True, eq=True)
class Job:
    """A job of ``replicas`` identical replicas.

    Per-replica demand, in canonical integer units: ``cpu`` milli-cores, ``memory`` MiB, and either
    ``gpus`` whole GPUs (exclusive) or ``gpu_milli`` (1..999) milli-GPU of exactly one GPU shared with
    others, or neither (a CPU-only replica). ``gpu_memory`` is MiB needed on each GPU it uses.

    Replicas form a gang: all ``replicas`` are placed or none. An elastic job sets
    ``min_replicas < replicas``: any count from ``min_replicas`` to ``replicas`` is acceptable (each
    extra replica adds utility), fewer is none.

    ``gpu_models`` (empty = any) and ``node_selector`` (labels a node must carry) restrict the nodes.
    ``priority``: higher is more important. ``arrival`` and ``duration`` in seconds (duration is an
    estimate, None = unknown). ``preemptible=False`` keeps a running job where it runs.
    """

    name: str
    cpu: int = 0
    memory: int = 0
    gpus: int = 0
    gpu_milli: int = 0
    gpu_memory: int = 0
    replicas: int = 1
    min_replicas: int | None = None
    gpu_models: frozenset[str] = frozenset()
    node_selector: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    priority: int = 0
    arrival: float = 0.0
    duration: float | None = None
    placement: PlacementRule = PlacementRule.ANY
    preemptible: bool = True

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by field values (the read-only ``node_selector`` view itself does not pickle): parts of a
        problem travel to worker processes and Ray tasks."""
        state = dict(self.__dict__)
        state["node_selector"] = dict(state["node_selector"])
        return (_restore, (type(self), state))

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "name", _check.name("name", self.name))
        for attr in ("cpu", "memory", "gpus", "gpu_milli", "gpu_memory"):
            _set(self, attr, _check.integer(attr, getattr(self, attr)))
        if self.gpus and self.gpu_milli:
            raise ProblemError(
                "gpu_milli",
                self.gpu_milli,
                f"is set with gpus={self.gpus}: a replica takes whole GPUs or a share of one",
            )
        if self.gpu_milli >= MILLI:
            raise ProblemError(
                "gpu_milli", self.gpu_milli, "is not a share of one GPU (< 1000); ask for gpus=1 instead"
            )
        _set(self, "replicas", _check.integer("replicas", self.replicas, minimum=1, maximum=LIMITS.replicas))
        lo = (
            self.replicas
            if self.min_replicas is None
            else _check.integer("min_replicas", self.min_replicas, minimum=1, maximum=LIMITS.replicas)
        )
        if lo > self.replicas:
            raise ProblemError("min_replicas", lo, f"is above replicas={self.replicas}")
        _set(self, "min_replicas", lo)
        _set(self, "gpu_models", _check.names("gpu_models", self.gpu_models))
        _set(self, "node_selector", _check.labels("node_selector", self.node_selector))
        _set(self, "priority", _check.integer("priority", self.priority, minimum=None, maximum=LIMITS.priority))
        _set(self, "arrival", _check.real("arrival", self.arrival, maximum=LIMITS.seconds))
        _set(self, "duration", _check.real("duration", self.duration, minimum=0, optional=True, maximum=LIMITS.seconds))
        try:
            _set(self, "placement", PlacementRule(self.placement))
        except ValueError:
            valid = ", ".join(p.value for p in PlacementRule)
            raise ProblemError("placement", self.placement, f"is not one of {valid}") from None
        if not isinstance(self.preemptible, bool):
            raise ProblemError("preemptible", self.preemptible, "is not true or false")

    def __hash__(self) -> int:
        return hash((self.name, self.cpu, self.memory, self.gpus, self.gpu_milli, self.replicas))

    # Derived views -------------------------------------------------------------------------
    @property
    def gpu_demand(self) -> int:
        """Milli-GPU per replica: 1000 x gpus for whole GPUs, the share for a sharing replica."""
        return self.gpus * MILLI + self.gpu_milli

    @property
    def gpus_used(self) -> int:
        """Physical GPUs one replica touches: ``gpus``, 1 for a share, 0 for CPU-only."""
        return self.gpus if self.gpus else (1 if self.gpu_milli else 0)

    @property
    def per_gpu_milli(self) -> int:
        """Milli-GPU taken on each GPU the replica touches (1000, the share, or 0)."""
        return MILLI if self.gpus else self.gpu_milli

    @property
    def shares_gpu(self) -> bool:
        return self.gpu_milli > 0

    @property
    def is_elastic(self) -> bool:
        return self.min_replicas is not None and self.min_replicas < self.replicas

    @property
    def demand_key(self) -> tuple[Any, ...]:
        """Everything that decides where one replica fits and what it is worth.

        Jobs with equal keys are interchangeable for every engine (the name, arrival and duration
        aside), which is what lets the integer programs count jobs per class.
        """
        return (
            self.cpu,
            self.memory,
            self.gpus,
            self.gpu_milli,
            self.gpu_memory,
            self.replicas,
            self.min_replicas,
            tuple(sorted(self.gpu_models)),
            tuple(sorted(self.node_selector.items())),
            self.priority,
            self.placement.value,
        )

    def allows(self, node: Any) -> bool:
        """Whether ``node`` passes this job's GPU-model and label constraints (not capacity)."""
        if self.gpu_demand and self.gpu_models and node.gpu_model not in self.gpu_models:
            return False
        return all(node.labels.get(k) == v for k, v in self.node_selector.items())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "cpu": self.cpu, "memory": self.memory}
        if self.gpus:
            out["gpus"] = self.gpus
        if self.gpu_milli:
            out["gpu_milli"] = self.gpu_milli
        if self.gpu_memory:
            out["gpu_memory"] = self.gpu_memory
        if self.replicas != 1:
            out["replicas"] = self.replicas
        if self.min_replicas != self.replicas:
            out["min_replicas"] = self.min_replicas
        if self.gpu_models:
            out["gpu_models"] = sorted(self.gpu_models)
        if self.node_selector:
            out["node_selector"] = dict(self.node_selector)
        if self.priority:
            out["priority"] = self.priority
        if self.arrival:
            out["arrival"] = self.arrival
        if self.duration is not None:
            out["duration"] = self.duration
        if self.placement is not PlacementRule.ANY:
            out["placement"] = self.placement.value
        if not self.preemptible:
            out["preemptible"] = False
        return out


def _restore(cls: type, state: dict[str, Any]) -> Any:
    """Rebuild a pickled value without validating it again (it was valid when pickled)."""
    out: Any = object.__new__(cls)
    state["node_selector"] = MappingProxyType(state["node_selector"])
    out.__dict__.update(state)
    return out
