"""The dashboard: ``/ui`` (the page), ``/ui/fragment`` (its live part), ``/ui/static/*`` (script, style)."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from optalloc.service import ui
from optalloc.service.deps import cluster
from optalloc.service.errors import ApiError, error_responses
from optalloc.service.routers.plan import snapshot
from optalloc.service.runtime import Cluster

router = APIRouter(tags=["dashboard"])
Clu = Annotated[Cluster, Depends(cluster)]
STATIC = {
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# The page loads its own script and style only; nothing from elsewhere, no inline script.
CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self'"


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


@router.get("/ui", response_class=HTMLResponse, responses=error_responses(503), summary="The dashboard")
def dashboard(request: Request, c: Clu) -> HTMLResponse:
    return _html(ui.page(snapshot(c, decisions=20, queue_limit=200), request.app.state.settings.ui_refresh))


@router.get("/ui/fragment", response_class=HTMLResponse, responses=error_responses(503), summary="Live part")
def dashboard_fragment(c: Clu) -> HTMLResponse:
    return _html(ui.fragment(snapshot(c, decisions=20, queue_limit=200)))


@router.get("/ui/static/{name}", responses=error_responses(404), summary="The dashboard's script and style")
def static(name: str) -> Response:
    if name not in STATIC:
        raise ApiError(404, f"no file {name!r}", "name")
    data = resources.files("optalloc.service").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})
