"""Problem files (JSON or YAML by suffix).

.. code-block:: yaml

    version: 1
    nodes:
      - {name: node-a, cpu: 96000, memory: 393216, gpus: 8, gpu_model: V100, gpu_memory: 32Gi}
    jobs:
      - {name: train, cpu: "8", memory: 64Gi, gpus: 4, replicas: 2}
      - {name: notebook, cpu: 500m, memory: 4Gi, gpu_milli: 250}
    current: {placements: [...]}        # optional: what runs now (an allocation file's content)
    weights: {migration: 200}           # optional: ObjectiveWeights fields
    gpu_models: [V100, A100]            # optional: models jobs may name beyond the nodes' own

Field names are those of :class:`Node` and :class:`Job`. Plain integers are canonical units (CPU
milli-cores, memory and GPU memory MiB); strings take Kubernetes units (see :mod:`optalloc.io.units`).
Writing always uses canonical integers, and ``problem_from_dict(problem_to_dict(p))`` rebuilds an
equal problem.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from optalloc.core import LIMITS, Job, Node, ObjectiveWeights, Problem, ProblemError, check_running
from optalloc.io import _documents as doc
from optalloc.io import units
from optalloc.io._table import StrPath
from optalloc.io.allocation_file import allocation_from_dict, allocation_to_dict

VERSION = 1
PROBLEM_KEYS = ("version", "description", "nodes", "jobs", "current", "weights", "gpu_models")
NODE_KEYS = tuple(f.name for f in fields(Node))
JOB_KEYS = tuple(f.name for f in fields(Job))
WEIGHT_KEYS = tuple(f.name for f in fields(ObjectiveWeights))

__all__ = [
    "VERSION",
    "job_from_dict",
    "node_from_dict",
    "problem_from_dict",
    "problem_to_dict",
    "read_problem",
    "write_problem",
]


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The problem file's content, in canonical integer units (plain JSON types)."""
    out: dict[str, Any] = {
        "version": VERSION,
        "nodes": [n.to_dict() for n in problem.nodes],
        "jobs": [j.to_dict() for j in problem.jobs],
    }
    if problem.current is not None:
        out["current"] = allocation_to_dict(problem.current)
    if problem.weights != ObjectiveWeights():
        out["weights"] = problem.weights.to_dict()
    node_models = {n.gpu_model for n in problem.nodes if n.gpu_model is not None and n.gpus}
    if problem.gpu_models and set(problem.gpu_models) - node_models:
        out["gpu_models"] = sorted(problem.gpu_models)
    result: dict[str, Any] = doc.plain(out)
    return result


def problem_from_dict(data: Any) -> Problem:
    """A :class:`Problem` from a file's content; errors name the path (``jobs[3].memory``)."""
    top = doc.mapping("", data, "a problem: version, nodes, jobs")
    doc.known_keys("", top, PROBLEM_KEYS, "problem file")
    version = top.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        raise ProblemError("version", version, f"is not a supported version ({VERSION})")
    if top.get("description") is not None and not isinstance(top["description"], str):
        raise ProblemError("description", top["description"], "is not a string")
    raw_nodes = doc.listing("nodes", _or_empty(top.get("nodes")), "of nodes")
    raw_jobs = doc.listing("jobs", _or_empty(top.get("jobs")), "of jobs")
    for key, items, limit in (("nodes", raw_nodes, LIMITS.nodes), ("jobs", raw_jobs, LIMITS.jobs)):
        if len(items) > limit:  # before any object is built
            raise ProblemError(key, len(items), f"{key} are more than the limit of {limit:,} (docs/limits.md)")
    nodes = [node_from_dict(item, f"nodes[{i}]") for i, item in enumerate(raw_nodes)]
    jobs = [job_from_dict(item, f"jobs[{i}]") for i, item in enumerate(raw_jobs)]
    current = allocation_from_dict(top["current"], "current") if top.get("current") is not None else None
    weights = ObjectiveWeights()
    if top.get("weights") is not None:
        raw = doc.mapping("weights", top["weights"], "objective weights")
        doc.known_keys("weights", raw, WEIGHT_KEYS, "weights")
        if "lexicographic" in raw and not isinstance(raw["lexicographic"], bool):
            raise ProblemError("weights.lexicographic", raw["lexicographic"], "is not true or false")
        try:
            weights = ObjectiveWeights(**raw)
        except ProblemError as err:
            raise err.prefixed("weights") from None
    models = top.get("gpu_models")
    if models is not None:
        models = doc.listing("gpu_models", models, "of GPU model names")
        for i, name in enumerate(models):
            if not isinstance(name, str) or not name.strip():
                raise ProblemError(f"gpu_models[{i}]", name, "is not a GPU model name")
    problem = Problem(tuple(nodes), tuple(jobs), current, weights, None if models is None else frozenset(models))
    if current is not None:
        check_running(problem, current, "current", fits=False)  # whether it still fits is the solve's question
    return problem


def node_from_dict(data: Any, path: str = "") -> Node:
    """A :class:`Node` from a mapping of its fields (units accepted for cpu, memory, gpu_memory)."""
    item = doc.mapping(path, data, "a node: name, cpu, memory, gpus, ...")
    doc.known_keys(path, item, NODE_KEYS, "node")
    doc.required(path, item, ("name",))
    kwargs = dict(item)
    try:
        for key, convert in (("cpu", units.cpu_milli), ("memory", units.memory_mib), ("gpu_memory", units.memory_mib)):
            if key in kwargs:
                kwargs[key] = convert(kwargs[key], key, capacity=True)
        return Node(**kwargs)
    except ProblemError as err:
        raise err.prefixed(path) if path else err from None


def job_from_dict(data: Any, path: str = "") -> Job:
    """A :class:`Job` from a mapping of its fields (units accepted for cpu, memory, gpu_memory)."""
    item = doc.mapping(path, data, "a job: name, cpu, memory, gpus or gpu_milli, ...")
    doc.known_keys(path, item, JOB_KEYS, "job")
    doc.required(path, item, ("name",))
    kwargs = dict(item)
    try:
        for key, convert in (("cpu", units.cpu_milli), ("memory", units.memory_mib), ("gpu_memory", units.memory_mib)):
            if key in kwargs:
                kwargs[key] = convert(kwargs[key], key)
        if kwargs.get("gpu_models") is not None and not isinstance(kwargs["gpu_models"], (str, list)):
            raise ProblemError("gpu_models", kwargs["gpu_models"], "is not a list of GPU model names")
        return Job(**kwargs)
    except ProblemError as err:
        raise err.prefixed(path) if path else err from None


def read_problem(path: StrPath) -> Problem:
    """Read a problem file (``.json``, ``.yaml``, ``.yml``); errors name the file and the path inside."""
    data = doc.load(path)
    try:
        return problem_from_dict(data)
    except ProblemError as err:
        raise doc.in_file(Path(path).name, err) from None


def write_problem(problem: Problem, path: StrPath) -> None:
    """Write a problem file in canonical units (JSON or YAML by suffix)."""
    doc.dump(problem_to_dict(problem), path)


def _or_empty(value: Any) -> Any:
    return [] if value is None else value
