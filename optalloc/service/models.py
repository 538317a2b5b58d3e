"""The HTTP vocabulary: pydantic models that mirror the core types and the file formats' JSON.

These models describe the wire (and the OpenAPI document); they are converted at the edge into the
core's frozen dataclasses through the file-format readers (:func:`optalloc.io.node_from_dict`,
:func:`optalloc.io.job_from_dict`, :func:`optalloc.io.problem_from_dict`), so that a request body is
read exactly as a problem file is: the same units (``"500m"``, ``"16Gi"`` or canonical integers), the
same checks, the same field paths in errors (``jobs[3].gpus: -1 is negative``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from optalloc.core.limits import LIMITS

# The core's size limits (optalloc.core.LIMITS, docs/limits.md), stated in the schema so that a request
# beyond them is refused before any work: GPUs per node, replicas per job, any integer quantity,
# priorities and seconds.
NAME_MAX = LIMITS.name_length
GPUS_PER_NODE = LIMITS.gpus_per_node
REPLICAS = LIMITS.replicas
QUANTITY = LIMITS.quantity
PRIORITY = LIMITS.priority
SECONDS = LIMITS.seconds


def _quantity(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("is not an integer in canonical units or a quantity string such as 500m or 16Gi")
    if isinstance(value, int) and not 0 <= value <= QUANTITY:
        raise ValueError(f"is not between 0 and the limit of {QUANTITY} (docs/limits.md)")
    if isinstance(value, str) and len(value) > 64:
        raise ValueError("is longer than 64 characters: not a quantity")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("is not a name (a string)")
    if not value or len(value) > NAME_MAX:
        raise ValueError(f"is not a name of 1 to {NAME_MAX} characters")
    return value


Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": QUANTITY}, {"type": "string", "maxLength": 64}],
            "description": "canonical integer (milli-cores, MiB) or a Kubernetes quantity string (500m, 16Gi)",
        }
    ),
]
Name = Annotated[
    str,
    PlainValidator(_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": NAME_MAX}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Nodes and jobs (the problem file's shapes) -----------------------------------------------------


class NodeSpec(_Strict):
    """A node, as in a problem file: CPU in milli-cores or a quantity, memory and GPU memory in MiB or
    a quantity, ``gpus`` of model ``gpu_model`` with ``gpu_memory`` each, ``labels``."""

    name: Name
    cpu: Quantity = 0
    memory: Quantity = 0
    gpus: int = Field(0, ge=0, le=GPUS_PER_NODE)
    gpu_model: str | None = Field(None, max_length=NAME_MAX)
    gpu_memory: Quantity = 0
    labels: dict[str, str] = Field(default_factory=dict)


class NodeUpdate(_Strict):
    """A node's new description (``PUT /v1/nodes/{name}``); ``name``, when given, must be the path's."""

    name: Name | None = None
    cpu: Quantity = 0
    memory: Quantity = 0
    gpus: int = Field(0, ge=0, le=GPUS_PER_NODE)
    gpu_model: str | None = Field(None, max_length=NAME_MAX)
    gpu_memory: Quantity = 0
    labels: dict[str, str] = Field(default_factory=dict)


class JobSpec(_Strict):
    """A job, as in a problem file (per-replica demand). ``arrival`` defaults to the time the service
    accepts it (seconds since the epoch): the queue is first come, first served by arrival."""

    name: Name
    cpu: Quantity = 0
    memory: Quantity = 0
    gpus: int = Field(0, ge=0, le=GPUS_PER_NODE)
    gpu_milli: int = Field(0, ge=0, le=999)
    gpu_memory: Quantity = 0
    replicas: int = Field(1, ge=1, le=REPLICAS)
    min_replicas: int | None = Field(None, ge=1, le=REPLICAS)
    gpu_models: list[str] | str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    priority: int = Field(0, ge=-PRIORITY, le=PRIORITY)
    arrival: float | None = Field(None, ge=-SECONDS, le=SECONDS)
    duration: float | None = Field(None, ge=0, le=SECONDS)
    placement: Literal["any", "pack", "spread", "single-node"] = "any"
    preemptible: bool = True


class JobBatch(_Strict):
    """Several jobs submitted in one transaction: all are accepted or none."""

    jobs: list[JobSpec] = Field(max_length=10_000)


# Allocations (the allocation file's shape) ------------------------------------------------------


class PlacementModel(BaseModel):
    """Replica ``replica`` of ``job`` on ``node``, GPU indices ``gpus``, ``gpu_milli`` on each."""

    job: str
    replica: int = 0
    node: str
    gpus: list[int] = Field(default_factory=list)
    gpu_milli: int = 0


class UnplacedModel(BaseModel):
    """A job left out, and why (``fits no node``, ``insufficient capacity``, ``not selected``, ...)."""

    job: str
    reason: str
    detail: str | None = None


class SummaryModel(BaseModel):
    """The allocation file's summary: how the answer was found (and, with the problem, what it achieves)."""

    model_config = ConfigDict(extra="allow")
    method: str | None = None
    status: str | None = None
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    wall_time: float | None = None


class AllocationFile(BaseModel):
    """Exactly the allocation file's JSON (docs/formats.md)."""

    summary: SummaryModel | None = None
    placements: list[PlacementModel] = Field(default_factory=list)
    unplaced: list[UnplacedModel] = Field(default_factory=list)


class AllocationIn(_Strict):
    """An allocation file given as input (``current``, ``previous``)."""

    summary: dict[str, Any] | None = None
    placements: list[dict[str, Any]] = Field(default_factory=list)
    unplaced: list[dict[str, Any]] = Field(default_factory=list)


class ProblemFile(_Strict):
    """Exactly the problem file's JSON (docs/formats.md)."""

    version: int = 1
    description: str | None = None
    nodes: list[NodeSpec] = Field(default_factory=list, max_length=LIMITS.nodes)
    jobs: list[JobSpec] = Field(default_factory=list, max_length=LIMITS.jobs)
    current: AllocationIn | None = None
    weights: dict[str, Any] | None = None
    gpu_models: list[str] | None = None


class SolveRequest(_Strict):
    """A stateless solve: the problem, the method and its budget, and the options of ``solve()``."""

    problem: ProblemFile
    method: str = "auto"
    time_limit: float = Field(1.0, gt=0, description="seconds; at most the service's --max-solve-time")
    previous: AllocationIn | None = None
    seed: int = Field(0, ge=0, le=2**31 - 1)
    relative_gap: float = Field(0.0, ge=0, le=1)
    order: str = "fcfs"
    allow_migration: bool = False


# The stateful cluster ----------------------------------------------------------------------------


class GpuUse(BaseModel):
    """One GPU of a node: who holds it, and how much of it (milli-GPU, 1000 = all)."""

    index: int
    used_milli: int
    jobs: dict[str, int] = Field(description="job -> milli-GPU it holds on this GPU")


class NodeOut(BaseModel):
    """A node as the service knows it: its description, drained or not, and its use by the plan."""

    node: dict[str, Any] = Field(description="the node in canonical units (the problem file's node)")
    drained: bool
    jobs: list[str]
    gpus: list[GpuUse]
    cpu_used: int
    memory_used: int


class NodeList(BaseModel):
    nodes: list[NodeOut]


JobState = Literal["pending", "queued", "running"]


class JobOut(BaseModel):
    """A job's status. ``pending``: accepted, not yet seen by the loop; ``queued``: waiting, with the
    ``reason`` (and ``detail``) it is not placed; ``running``: placed, ``placements`` say where."""

    name: str
    state: JobState
    job: dict[str, Any] = Field(description="the job in canonical units (the problem file's job)")
    submitted: float
    placements: list[PlacementModel] = Field(default_factory=list)
    reason: str | None = None
    detail: str | None = None


class JobList(BaseModel):
    jobs: list[JobOut]
    total: int


class Accepted(BaseModel):
    """What a change request did: ``created`` false when an identical object already existed."""

    name: str
    created: bool = True
    state: str


class BatchAccepted(BaseModel):
    accepted: int
    created: int


class ActionModel(BaseModel):
    kind: Literal["start", "preempt", "migrate", "resize"]
    job: str
    reason: str
    placements: list[PlacementModel] = Field(default_factory=list)
    previous: list[PlacementModel] = Field(default_factory=list)


class ChangesModel(BaseModel):
    """From the plan ``since`` (a version) to this one: jobs started, stopped, migrated."""

    since: int | None
    starts: list[str]
    stops: list[str]
    migrations: list[str]
    moved_replicas: int


class PlanOut(BaseModel):
    """The current plan: the allocation (the allocation file's JSON), how and why it was made, and
    what changed since the previous plan (or since ``?since=``)."""

    version: int
    time: float | None
    trigger: str | None
    trigger_detail: str | None
    method: str
    fallback: str | None = Field(
        description="why the fallback heuristic answered instead of the method (no-answer, infeasible, "
        "unavailable); null when it did not"
    )
    solve_time: float
    budget: float
    gap: float | None
    stale: bool
    error: str
    allocation: AllocationFile
    actions: list[ActionModel]
    changes: ChangesModel


class UsageModel(_Strict):
    """Observed use (None = not measured): ``gpu_milli`` GPU busy time in milli-GPU (40% of one GPU
    = 400), ``gpu_memory`` MiB, ``cpu`` milli-cores, ``memory`` MiB, ``gpus`` GPUs reported."""

    gpu_milli: float | None = Field(None, ge=0)
    gpu_memory: float | None = Field(None, ge=0)
    cpu: float | None = Field(None, ge=0)
    memory: float | None = Field(None, ge=0)
    gpus: int = Field(0, ge=0)


class ObservationIn(_Strict):
    """Usage pushed by a monitor: per node and per job. ``time`` defaults to the time it is received."""

    time: float | None = None
    nodes: dict[str, UsageModel] = Field(default_factory=dict)
    jobs: dict[str, UsageModel] = Field(default_factory=dict)


class ObservationAccepted(BaseModel):
    time: float
    nodes: int
    jobs: int


class SolveInfo(BaseModel):
    """The last solve: objective, bound, gap, status, budget and time."""

    version: int
    trigger: str | None
    method: str
    status: str | None
    objective: float | None
    bound: float | None
    gap: float | None
    solve_time: float
    budget: float
    fallback: str | None = Field(
        description="why the fallback heuristic answered (no-answer, infeasible, unavailable); null when it did not"
    )
    time: float | None


class DecisionModel(BaseModel):
    time: float
    kind: str
    job: str
    reason: str


class ClusterOut(BaseModel):
    """Everything the dashboard shows, as data."""

    nodes: list[NodeOut]
    queue: list[JobOut]
    running: int
    pending: int
    last_solve: SolveInfo
    drift: float | None
    stale: bool
    monitor_error: str
    decisions: list[DecisionModel]
    gpu_allocation_ratio: float
    cpu_allocation_ratio: float
    memory_allocation_ratio: float


class Health(BaseModel):
    status: str
    detail: str = ""


# Errors ------------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="path of the offending field, as in a problem file: jobs[3].gpus")
    message: str


class ErrorOut(BaseModel):
    """Every error answer: the HTTP status, one sentence, and the field paths at fault."""

    status: int
    detail: str
    field: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
