"""The FastAPI application: routers per resource, the store and the loop started in the lifespan.

``create_app(settings)`` builds everything from one :class:`~optalloc.service.config.Settings`;
nothing happens at import time. The lifespan opens the SQLite store, restores the cluster from it,
starts the loop thread, and on shutdown stops the loop and closes the store.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from optalloc import __version__
from optalloc.service import errors
from optalloc.service.bodylimit import BodyLimit
from optalloc.service.config import Settings
from optalloc.service.metrics import ServiceMetrics
from optalloc.service.runtime import Cluster
from optalloc.service.store import Store

log = logging.getLogger(__name__)

DESCRIPTION = """\
optalloc as a service: a stateless solve (a problem file's JSON in, an allocation file's JSON out), and a
stateful cluster (nodes, jobs, the plan) kept by the adaptive loop and stored in SQLite, so that it
survives a restart. Every route that changes state needs `Authorization: Bearer <token>` when the service
has a token. Every error is `{"status", "detail", "field", "errors"}` with the field path at fault.
"""


class RequestMetrics:
    """Count and time every request by its route's template (never the raw path: bounded labels)."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def tracked(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, str(status[0])).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)


def create_app(settings: Settings, *, source: Any = None, clock: Any = time.time) -> FastAPI:
    """The service's application. ``source``: a metrics source for the loop (a
    :class:`~optalloc.adaptive.PrometheusSource` is built from ``settings.prometheus`` when None);
    ``clock``: the wall clock of the loop's decisions."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.db, sync=settings.sync, plan_history=settings.plan_history)
        monitor = source
        if monitor is None and settings.prometheus:
            from optalloc.adaptive import PrometheusSource

            monitor = PrometheusSource(settings.prometheus)
        cluster = Cluster(store, settings, metrics=metrics, source=monitor, clock=clock)
        try:
            cluster.restore()
            # Everything built so far (the libraries, the restored cluster) lives as long as the process:
            # keep it out of the collector's full passes, whose pauses would show in request latency.
            gc.collect()
            gc.freeze()
            cluster.start()
            app.state.cluster = cluster
            log.info("optalloc service ready (db %s)", settings.db)
            yield
        finally:
            app.state.cluster = None
            cluster.stop()
            store.close()

    app = FastAPI(
        title="optalloc",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.cluster = None
    app.state.solve_gate = threading.BoundedSemaphore(max(1, settings.max_concurrent_solves))
    errors.install(app, on_internal_error=metrics.internal_errors.inc)

    from optalloc.service.routers import health, jobs, k8s, nodes, plan, solve, ui

    for module in (solve, nodes, jobs, plan, k8s, ui, health):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, small=settings.max_body, large=settings.max_large_body)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
