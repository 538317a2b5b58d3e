"""Kubernetes pods as optalloc jobs, and the scheduler extender's filter and prioritize decisions.

A pod becomes a one-replica :class:`~optalloc.core.Job` named ``namespace/name``:

- ``cpu`` and ``memory``: the pod's effective request as the scheduler computes it: the sum over its
  containers, or the largest init container if that is more, plus ``spec.overhead``; a container that
  states only a limit requests its limit (Kubernetes' defaulting). Memory strings follow Kubernetes
  (a bare number is bytes);
- ``gpus``: the ``nvidia.com/gpu`` request (or limit) summed the same way;
- ``gpu_milli``: the annotation ``optalloc.io/gpu-milli`` (1..999: a share of one GPU), for a pod
  that asks no ``nvidia.com/gpu``;
- ``gpu_models``: the annotation ``optalloc.io/gpu-models`` (``A100|H100``);
- ``optalloc.io/job``: the annotation naming the optalloc job the pod runs (a replica of it); without
  it, a job named ``namespace/name`` is looked up.

For a pod whose job optalloc knows, the plan decides: filter keeps the nodes the plan places the job on
(none while it waits, each failed node saying why), prioritize scores them 10 and every other node 0.
For any other pod, filter keeps the nodes where it fits in what the plan leaves free, and prioritize
prefers the tightest fit (best fit on the resource the pod needs most; shares on GPUs already shared),
so that such pods do not take the room the plan holds. Nodes optalloc does not know pass the filter
unchanged and score 0. The extender never changes state and never binds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from optalloc.core import Job, ProblemError
from optalloc.io import units

GPU_RESOURCE = "nvidia.com/gpu"
SHARE_ANNOTATION = "optalloc.io/gpu-milli"
MODELS_ANNOTATION = "optalloc.io/gpu-models"
JOB_ANNOTATION = "optalloc.io/job"
MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProblemError(path, value, "is not an object")
    return value


def _list(value: Any, path: str) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProblemError(path, value, "is not a list")
    return value


def _memory(value: Any, path: str) -> int:
    if isinstance(value, str):
        parsed = units.parse_quantity(value.strip())
        if parsed is not None and parsed[1] == "":  # Kubernetes reads a bare number as bytes
            if parsed[0] < 0:
                raise ProblemError(path, value, "is negative")
            return int((parsed[0] / Decimal(1 << 20)).to_integral_value(rounding=ROUND_CEILING))
    return units.memory_mib(value, path)


def _gpus(value: Any, path: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProblemError(path, value, "is not a whole number of GPUs")


def _container_requests(container: Any, path: str) -> tuple[int, int, int]:
    c = _mapping(container, path)
    resources = _mapping(c.get("resources"), f"{path}.resources")
    requests = _mapping(resources.get("requests"), f"{path}.resources.requests")
    limits = _mapping(resources.get("limits"), f"{path}.resources.limits")

    def pick(key: str) -> tuple[Any, str] | None:
        if key in requests:
            return requests[key], f"{path}.resources.requests.{key}"
        if key in limits:
            return limits[key], f"{path}.resources.limits.{key}"
        return None

    cpu = pick("cpu")
    memory = pick("memory")
    gpu = pick(GPU_RESOURCE)
    return (
        units.cpu_milli(cpu[0], cpu[1]) if cpu else 0,
        _memory(memory[0], memory[1]) if memory else 0,
        _gpus(gpu[0], gpu[1]) if gpu else 0,
    )


def pod_name(pod: Mapping[str, Any]) -> str:
    meta = _mapping(pod.get("metadata"), "pod.metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ProblemError("pod.metadata.name", name, "is not a pod name")
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str):
        raise ProblemError("pod.metadata.namespace", namespace, "is not a namespace")
    return f"{namespace}/{name}"


def annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = _mapping(pod.get("metadata"), "pod.metadata")
    return _mapping(meta.get("annotations"), "pod.metadata.annotations")


def pod_to_job(pod: Mapping[str, Any]) -> Job:
    """The optalloc job of one pod (see the module's docstring); errors name the pod's field."""
    pod = _mapping(pod, "pod")
    spec = _mapping(pod.get("spec"), "pod.spec")
    total = [0, 0, 0]
    for i, c in enumerate(_list(spec.get("containers"), "pod.spec.containers")):
        for k, v in enumerate(_container_requests(c, f"pod.spec.containers[{i}]")):
            total[k] += v
    for i, c in enumerate(_list(spec.get("initContainers"), "pod.spec.initContainers")):
        for k, v in enumerate(_container_requests(c, f"pod.spec.initContainers[{i}]")):
            total[k] = max(total[k], v)
    overhead = _mapping(spec.get("overhead"), "pod.spec.overhead")
    if "cpu" in overhead:
        total[0] += units.cpu_milli(overhead["cpu"], "pod.spec.overhead.cpu")
    if "memory" in overhead:
        total[1] += _memory(overhead["memory"], "pod.spec.overhead.memory")
    notes = annotations(pod)
    share = 0
    if SHARE_ANNOTATION in notes:
        raw = notes[SHARE_ANNOTATION]
        path = f"pod.metadata.annotations.{SHARE_ANNOTATION}"
        if not (isinstance(raw, str) and raw.strip().isdigit() and 1 <= int(raw) <= 999):
            raise ProblemError(path, raw, "is not a share of one GPU in milli-GPU (1..999)")
        if total[2]:
            raise ProblemError(path, raw, f"is set on a pod that asks {total[2]} whole {GPU_RESOURCE}")
        share = int(raw)
    models = notes.get(MODELS_ANNOTATION, "")
    if not isinstance(models, str):
        raise ProblemError(f"pod.metadata.annotations.{MODELS_ANNOTATION}", models, "is not a string")
    try:
        return Job(
            pod_name(pod),
            cpu=total[0],
            memory=total[1],
            gpus=total[2],
            gpu_milli=share,
            gpu_models=frozenset(m for m in models.split("|") if m),
        )
    except ProblemError as err:
        raise err.prefixed("pod") from None


@dataclass(frozen=True)
class Free:
    """What the plan leaves free on one node."""

    gpu_free: tuple[int, ...]  # milli-GPU free per GPU
    cpu: int
    memory: int


def fit(job: Job, node: Any, free: Free) -> str:
    """Why ``job`` (one replica) does not fit ``node`` given ``free``; "" when it fits."""
    if not job.allows(node):
        return f"GPU model {node.gpu_model} or labels not allowed for the pod"
    if job.cpu > free.cpu:
        return f"needs {job.cpu}m CPU, {free.cpu}m free in optalloc's plan"
    if job.memory > free.memory:
        return f"needs {job.memory} MiB memory, {free.memory} MiB free in optalloc's plan"
    if job.gpu_memory and job.gpu_memory > node.gpu_memory:
        return f"needs {job.gpu_memory} MiB per GPU, the node's GPUs have {node.gpu_memory}"
    if job.gpus:
        whole = sum(1 for g in free.gpu_free if g >= 1000)
        if whole < job.gpus:
            return f"needs {job.gpus} whole GPUs, {whole} free in optalloc's plan"
    if job.gpu_milli and not any(g >= job.gpu_milli for g in free.gpu_free):
        return f"needs {job.gpu_milli} milli-GPU on one GPU, none has that much free in optalloc's plan"
    return ""


def score(job: Job, node: Any, free: Free) -> int:
    """0..10: the tighter the fit, the higher (best fit), on the resource the pod needs most."""
    if job.gpus or job.gpu_milli:
        total = max(1, node.gpus * 1000)
        if job.gpu_milli:
            # A share prefers a GPU already shared: the least free GPU that still holds it.
            left = min((g - job.gpu_milli for g in free.gpu_free if g >= job.gpu_milli), default=total)
            return MAX_SCORE - min(MAX_SCORE, round(MAX_SCORE * left / 1000))
        left = sum(free.gpu_free) - job.gpus * 1000
        return MAX_SCORE - min(MAX_SCORE, round(MAX_SCORE * max(0, left) / total))
    ratios = []
    if node.cpu:
        ratios.append(max(0, free.cpu - job.cpu) / node.cpu)
    if node.memory:
        ratios.append(max(0, free.memory - job.memory) / node.memory)
    left = min(ratios) if ratios else 1.0
    return MAX_SCORE - min(MAX_SCORE, round(MAX_SCORE * left))
