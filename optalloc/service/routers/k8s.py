"""The Kubernetes scheduler extender (kube-scheduler's extender v1 JSON): ``/k8s/filter`` and
``/k8s/prioritize``. Read-only: they answer from the published plan and change nothing, so they need no
token (kube-scheduler's extender client sends none). See :mod:`optalloc.service.k8s` for the mapping."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from optalloc.core import Job, ProblemError
from optalloc.service import k8s
from optalloc.service.deps import cluster
from optalloc.service.errors import error_responses, problem_error
from optalloc.service.runtime import Cluster, View

router = APIRouter(tags=["kubernetes"])
Clu = Annotated[Cluster, Depends(cluster)]


class NodeListModel(BaseModel):
    """A ``v1.NodeList`` (only ``items[].metadata.name`` is read; every item is returned as it came)."""

    model_config = ConfigDict(extra="allow")
    items: list[dict[str, Any]] = Field(default_factory=list)


class ExtenderArgs(BaseModel):
    """``k8s.io/kube-scheduler/extender/v1.ExtenderArgs``: the pod, and the candidate nodes as a
    ``NodeList`` (``nodes``) or, with ``nodeCacheCapable``, by name (``nodenames``)."""

    model_config = ConfigDict(extra="allow")
    pod: dict[str, Any]
    nodes: NodeListModel | None = None
    nodenames: list[str] | None = None


class ExtenderFilterResult(BaseModel):
    """``ExtenderFilterResult``: the nodes kept (as they were given), the failed ones with reasons."""

    nodes: NodeListModel | None = None
    nodenames: list[str] | None = None
    failedNodes: dict[str, str] = Field(default_factory=dict)
    failedAndUnresolvableNodes: dict[str, str] = Field(default_factory=dict)
    error: str = ""


class HostPriority(BaseModel):
    """``HostPriority``: a node and its score (0..10, ``MaxExtenderPriority``)."""

    host: str
    score: int


def _candidates(args: ExtenderArgs) -> list[str]:
    if args.nodes is not None:
        names = []
        for i, item in enumerate(args.nodes.items):
            meta = item.get("metadata") if isinstance(item, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                raise ProblemError(f"nodes.items[{i}].metadata.name", name, "is not a node name")
            names.append(name)
        return names
    return list(args.nodenames or [])


def _known_job(c: Cluster, pod: dict[str, Any]) -> str | None:
    notes = k8s.annotations(pod)
    named = notes.get(k8s.JOB_ANNOTATION)
    if isinstance(named, str) and named in c.jobs:
        return named
    name = k8s.pod_name(pod)
    return name if name in c.jobs else None


def _free(c: Cluster, view: View, name: str) -> tuple[Any, k8s.Free] | None:
    record = c.nodes.get(name)
    if record is None:
        return None
    node = record.node
    use = view.node_use.get(name)
    if record.drained or use is None:
        gpu_free = tuple(0 if record.drained else 1000 for _ in range(node.gpus))
        cpu = 0 if record.drained else node.cpu
        memory = 0 if record.drained else node.memory
        return node, k8s.Free(gpu_free, cpu, memory)
    gpu_free = tuple(1000 - sum(g.values()) for g in use.gpus)
    return node, k8s.Free(gpu_free, node.cpu - use.cpu, node.memory - use.memory)


def _decide(c: Cluster, args: ExtenderArgs) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """(kept, failed with reasons, scores) for the candidates."""
    try:
        candidates = _candidates(args)
        pod = args.pod
        job_name = _known_job(c, pod)
        job: Job | None = None if job_name is not None else k8s.pod_to_job(pod)
    except ProblemError as err:
        raise problem_error(err) from None
    view = c.view
    kept: list[str] = []
    failed: dict[str, str] = {}
    scores: dict[str, int] = {}
    if job_name is not None:
        planned = {p.node for p in view.by_job.get(job_name, ())}
        status = c.job_status(job_name)
        for name in candidates:
            if name in planned:
                kept.append(name)
                scores[name] = k8s.MAX_SCORE
            elif planned:
                failed[name] = f"optalloc plans job {job_name} on {', '.join(sorted(planned))}"
                scores[name] = 0
            else:
                why = status.get("reason") or "waiting"
                failed[name] = f"optalloc: job {job_name} waits ({why})"
                scores[name] = 0
        return kept, failed, scores
    assert job is not None
    for name in candidates:
        found = _free(c, view, name)
        if found is None:  # not a node optalloc manages: not its decision
            kept.append(name)
            scores[name] = 0
            continue
        node, free = found
        record = c.nodes[name]
        why = "drained in optalloc" if record.drained else k8s.fit(job, node, free)
        if why:
            failed[name] = why
            scores[name] = 0
        else:
            kept.append(name)
            scores[name] = k8s.score(job, node, free)
    return kept, failed, scores


@router.post(
    "/k8s/filter",
    response_model=ExtenderFilterResult,
    response_model_exclude_none=True,
    responses=error_responses(413, 422, 503),
    summary="Scheduler extender: filter",
)
def k8s_filter(args: ExtenderArgs, c: Clu) -> Any:
    """kube-scheduler's filter call: the candidate nodes the pod may go to, per optalloc's plan."""
    kept, failed, _ = _decide(c, args)
    out: dict[str, Any] = {"failedNodes": failed, "failedAndUnresolvableNodes": {}, "error": ""}
    if args.nodes is not None:
        keep = set(kept)
        items = [item for item in args.nodes.items if item["metadata"]["name"] in keep]
        out["nodes"] = {**args.nodes.model_dump(exclude={"items"}), "items": items}
    else:
        out["nodenames"] = kept
    return out


@router.post(
    "/k8s/prioritize",
    response_model=list[HostPriority],
    responses=error_responses(413, 422, 503),
    summary="Scheduler extender: prioritize",
)
def k8s_prioritize(args: ExtenderArgs, c: Clu) -> Any:
    """kube-scheduler's prioritize call: a score 0..10 per candidate node (the plan's node 10)."""
    _, _, scores = _decide(c, args)
    return [{"host": name, "score": scores.get(name, 0)} for name in _candidates(args)]
