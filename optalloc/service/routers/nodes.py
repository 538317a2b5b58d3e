"""Nodes: register, update, drain and put back, remove, list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from optalloc.core import Node, ProblemError
from optalloc.service.auth import require_token
from optalloc.service.deps import cluster
from optalloc.service.errors import ApiError, error_responses, problem_error
from optalloc.service.models import Accepted, NodeList, NodeOut, NodeSpec, NodeUpdate
from optalloc.service.runtime import Cluster

router = APIRouter(tags=["nodes"])
NodeName = Annotated[str, Path(min_length=1, max_length=253, description="the node's name")]
Clu = Annotated[Cluster, Depends(cluster)]
MUTATING = [Depends(require_token)]


def _node(data: dict[str, Any]) -> Node:
    from optalloc.io import node_from_dict

    try:
        return node_from_dict(data)
    except ProblemError as err:
        raise problem_error(err) from None


@router.get("/v1/nodes", response_model=NodeList, responses=error_responses(503), summary="List the nodes")
def list_nodes(c: Clu) -> Any:
    """Every node, drained or not, with the jobs the plan puts there and each GPU's use by job."""
    return {"nodes": c.node_list()}


@router.get("/v1/nodes/{name}", response_model=NodeOut, responses=error_responses(404, 422, 503), summary="One node")
def get_node(name: NodeName, c: Clu) -> Any:
    return c.node_status(name)


@router.post(
    "/v1/nodes",
    response_model=Accepted,
    status_code=201,
    dependencies=MUTATING,
    responses={
        200: {"model": Accepted, "description": "an identical node exists"},
        **error_responses(401, 409, 413, 422, 503),
    },
    summary="Register a node",
)
def register_node(body: NodeSpec, response: Response, c: Clu) -> Any:
    """Register a node (a problem file's node). 201 when new, 200 when an identical node exists, 409
    when another node holds the name (``PUT`` updates it). The next step may place waiting jobs there."""
    created = c.put_node(_node(body.model_dump(exclude_none=True)), create_only=True)
    if not created:
        response.status_code = 200
    return {"name": body.name, "created": created, "state": "registered"}


@router.put(
    "/v1/nodes/{name}",
    response_model=Accepted,
    dependencies=MUTATING,
    responses={201: {"model": Accepted, "description": "the node was new"}, **error_responses(401, 409, 413, 422, 503)},
    summary="Register or update a node",
)
def update_node(name: NodeName, body: NodeUpdate, response: Response, c: Clu) -> Any:
    """Register or replace node ``name``. A changed node is taken out and put back: the jobs it held wait
    and are placed again by the next step (on it, if they still fit)."""
    if body.name is not None and body.name != name:
        raise ApiError(422, f"name: {body.name!r} is not the node of the path ({name!r})", "name")
    data = body.model_dump(exclude_none=True)
    data["name"] = name
    known = name in c.nodes
    changed = c.put_node(_node(data), create_only=False)
    if not known:
        response.status_code = 201
    return {"name": name, "created": not known, "state": "registered" if changed or known else "unchanged"}


@router.post(
    "/v1/nodes/{name}/drain",
    response_model=Accepted,
    dependencies=MUTATING,
    responses=error_responses(401, 404, 422, 503),
    summary="Drain a node",
)
def drain_node(name: NodeName, c: Clu) -> Any:
    """Drain node ``name``: its jobs wait again (the next step places them elsewhere) and nothing new goes
    there until it is put back (``/undrain``). The node stays registered."""
    changed = c.set_drained(name, True)
    return {"name": name, "created": False, "state": "drained" if changed else "already drained"}


@router.post(
    "/v1/nodes/{name}/undrain",
    response_model=Accepted,
    dependencies=MUTATING,
    responses=error_responses(401, 404, 422, 503),
    summary="Put a drained node back",
)
def undrain_node(name: NodeName, c: Clu) -> Any:
    changed = c.set_drained(name, False)
    return {"name": name, "created": False, "state": "active" if changed else "already active"}


@router.delete(
    "/v1/nodes/{name}",
    status_code=204,
    dependencies=MUTATING,
    responses=error_responses(401, 404, 422, 503),
    summary="Remove a node",
)
def remove_node(name: NodeName, c: Clu) -> Response:
    """Forget node ``name``; the jobs it held wait again."""
    c.remove_node(name)
    return Response(status_code=204)
