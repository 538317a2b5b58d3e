"""Shared needs of the routers, as FastAPI dependencies."""

from __future__ import annotations

from fastapi import Request

from optalloc.service.errors import ApiError
from optalloc.service.runtime import Cluster


async def cluster(request: Request) -> Cluster:
    """The service's stateful cluster (503 until it has been restored from the store)."""
    found: Cluster | None = getattr(request.app.state, "cluster", None)
    if found is None or not found.restored:
        raise ApiError(503, "the service is starting: the cluster is not restored yet")
    return found
