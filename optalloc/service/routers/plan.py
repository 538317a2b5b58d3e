"""The plan, the cluster at a glance, and pushed observations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from optalloc.service.auth import require_token
from optalloc.service.deps import cluster
from optalloc.service.errors import ApiError, error_responses
from optalloc.service.models import ClusterOut, ObservationAccepted, ObservationIn, PlanOut
from optalloc.service.runtime import Cluster, fallback_reason, observation_from

router = APIRouter(tags=["plan"])
Clu = Annotated[Cluster, Depends(cluster)]


@router.get("/v1/plan", response_model=PlanOut, responses=error_responses(404, 422, 503), summary="The current plan")
def get_plan(
    c: Clu,
    since: Annotated[
        int | None, Query(ge=0, description="diff against this plan version (default: the previous plan)")
    ] = None,
) -> Any:
    """The current allocation (exactly the allocation file's JSON), its version, why and how it was made
    (trigger, method, fallback, solve time against the budget, gap), the actions of the step that made
    it, and the changes (starts, stops, migrations) since the previous plan or since version ``since``."""
    return c.plan_out(since)


@router.get("/v1/cluster", response_model=ClusterOut, responses=error_responses(503), summary="The cluster at a glance")
def get_cluster(c: Clu, decisions: Annotated[int, Query(ge=0, le=500)] = 20) -> Any:
    """What the dashboard shows, as data: nodes and their GPUs by job, the queue with reasons, the last
    solve, the drift, and recent decisions."""
    return snapshot(c, decisions)


def snapshot(c: Cluster, decisions: int = 20, queue_limit: int = 1000) -> dict[str, Any]:
    view = c.view
    info = dict(view.info)
    queue = []
    for name in view.queue[:queue_limit]:
        record = c.jobs.get(name)
        if record is not None:
            queue.append(c._status(name, record, view))
    summary = view.allocation_dict.get("summary", {})
    return {
        "nodes": c.node_list(),
        "queue": queue,
        "running": len(view.by_job),
        "pending": c.pending_events,
        "last_solve": {
            "version": view.version,
            "trigger": info.get("trigger"),
            "method": info.get("method", ""),
            "status": summary.get("status"),
            "objective": summary.get("objective"),
            "bound": summary.get("bound"),
            "gap": info.get("gap"),
            "solve_time": float(info.get("solve_time", 0.0)),
            "budget": float(info.get("budget", c.config.budget)),
            "fallback": fallback_reason(info.get("fallback")),
            "time": view.time,
        },
        "drift": view.drift,
        "stale": view.stale,
        "monitor_error": view.monitor_error,
        "decisions": [d.__dict__ for d in c.store.decisions(decisions)] if decisions else [],
        "gpu_allocation_ratio": view.ratios["gpu"],
        "cpu_allocation_ratio": view.ratios["cpu"],
        "memory_allocation_ratio": view.ratios["memory"],
    }


@router.post(
    "/v1/observations",
    response_model=ObservationAccepted,
    status_code=202,
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 409, 413, 422, 503),
    summary="Push observed usage",
)
def push_observation(body: ObservationIn, c: Clu) -> Any:
    """Observed usage per node and per job (the units of ``optalloc.adaptive.NodeUsage``); the loop folds
    it into the drift at its next step. Only when the service does not read Prometheus itself. An
    observation is a measurement, not a change of the cluster: it is not stored (after a restart the
    drift starts again from the next observation)."""
    now = c.clock()
    if body.time is not None and body.time > now + 60:
        raise ApiError(422, f"time: {body.time} is in the future (now is {now:.0f})", "time")
    observation = observation_from(body.model_dump(), now)
    c.observe(observation)
    return {"time": observation.time, "nodes": len(observation.nodes), "jobs": len(observation.jobs)}
