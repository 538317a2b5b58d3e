"""A cluster node: what it can host, in canonical integer units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from optalloc.core import _check
from optalloc.core.limits import LIMITS


@dataclass(frozen=True, eq=True)
class Node:
    """A node of the cluster.

    Units: ``cpu`` in milli-cores, ``memory`` in MiB, ``gpus`` a count of GPUs (all of model
    ``gpu_model``), ``gpu_memory`` MiB per GPU (0 = not known: jobs that state a GPU memory need
    are not placed there). ``labels`` are matched by a job's ``node_selector``.
    """

    name: str
    cpu: int = 0
    memory: int = 0
    gpus: int = 0
    gpu_model: str | None = None
    gpu_memory: int = 0
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by field values (the read-only ``labels`` view itself does not pickle): parts of a
        problem travel to worker processes and Ray tasks."""
        state = dict(self.__dict__)
        state["labels"] = dict(state["labels"])
        return (_restore, (type(self), state))

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "name", _check.name("name", self.name))
        _set(self, "cpu", _check.integer("cpu", self.cpu))
        _set(self, "memory", _check.integer("memory", self.memory))
        _set(self, "gpus", _check.integer("gpus", self.gpus, maximum=LIMITS.gpus_per_node))
        _set(self, "gpu_memory", _check.integer("gpu_memory", self.gpu_memory))
        model = self.gpu_model if self.gpu_model not in ("",) else None
        if model is not None:
            model = _check.name("gpu_model", model)
        _set(self, "gpu_model", model)
        _set(self, "labels", _check.labels("labels", self.labels))

    def __hash__(self) -> int:
        return hash((self.name, self.cpu, self.memory, self.gpus, self.gpu_model, self.gpu_memory))

    @property
    def shape(self) -> tuple[int, int, int, str | None, int, tuple[tuple[str, str], ...]]:
        """Everything but the name: nodes with equal shapes are interchangeable."""
        return (self.cpu, self.memory, self.gpus, self.gpu_model, self.gpu_memory, tuple(sorted(self.labels.items())))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "cpu": self.cpu, "memory": self.memory, "gpus": self.gpus}
        if self.gpu_model is not None:
            out["gpu_model"] = self.gpu_model
        if self.gpu_memory:
            out["gpu_memory"] = self.gpu_memory
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


def _restore(cls: type, state: dict[str, Any]) -> Any:
    """Rebuild a pickled value without validating it again (it was valid when pickled)."""
    out: Any = object.__new__(cls)
    state["labels"] = MappingProxyType(state["labels"])
    out.__dict__.update(state)
    return out
