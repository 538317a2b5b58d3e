"""optalloc as a service (``optalloc serve``; needs the ``service`` extra: fastapi, uvicorn).

- a stateless solve: ``POST /v1/solve`` (a problem file's JSON in, an allocation file's JSON out);
- a stateful cluster kept by the adaptive loop, stored in SQLite (WAL), surviving restarts: nodes,
  jobs, ``GET /v1/plan``, pushed observations;
- a Kubernetes scheduler extender (``/k8s/filter``, ``/k8s/prioritize``);
- a dashboard at ``/ui``; ``/metrics``, ``/healthz``, ``/readyz``.

Layout: :mod:`~optalloc.service.app` (the application and its lifespan), ``routers/`` (one per
resource), :mod:`~optalloc.service.store` (SQLite), :mod:`~optalloc.service.runtime` (the cluster and
the loop's thread), :mod:`~optalloc.service.engine` (the loop's state and steps),
:mod:`~optalloc.service.worker` (the engine in a worker process of its own),
:mod:`~optalloc.service.wire` (what travels to and from the worker), :mod:`~optalloc.service.models`
(the HTTP wire), :mod:`~optalloc.service.auth`,
:mod:`~optalloc.service.k8s` (pods to jobs), :mod:`~optalloc.service.ui`. docs/service.md says more.
"""

from typing import Any

from optalloc.service.config import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # The application (FastAPI) is imported when asked for: the loop's worker process imports this
    # package for the engine and the wire, never the web framework.
    if name == "create_app":
        from optalloc.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
