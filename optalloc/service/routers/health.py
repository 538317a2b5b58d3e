"""Health and metrics: ``/healthz`` (the process answers), ``/readyz`` (the cluster is restored and the
loop is alive and stepping), ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from optalloc.service.models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Any:
    return {"status": "ok", "detail": ""}


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "not ready"}},
    summary="Readiness",
)
def readyz(request: Request) -> Any:
    cluster = getattr(request.app.state, "cluster", None)
    settings = request.app.state.settings
    if cluster is None or not cluster.ready:
        return JSONResponse({"status": "starting", "detail": "the cluster is being restored"}, status_code=503)
    if not cluster.alive:
        return JSONResponse({"status": "failed", "detail": "the loop thread stopped"}, status_code=503)
    view = cluster.view
    now = cluster.clock()
    # A step may legitimately take the budget (a re-solve); beyond that plus a few ticks the loop is stuck.
    late = settings.tick * 3 + cluster.config.budget * 2 + 5
    if view.last_step is not None and now - view.last_step > late:
        return JSONResponse({"status": "stuck", "detail": f"no step for {now - view.last_step:.0f}s"}, status_code=503)
    return {"status": "ready", "detail": cluster.error}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    cluster = getattr(request.app.state, "cluster", None)
    m = request.app.state.metrics
    if cluster is not None:
        m.nodes.set(len(cluster.nodes))
        m.jobs.set(len(cluster.jobs))
        m.plan_version.set(cluster.view.version)
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)
