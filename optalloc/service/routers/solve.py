"""``POST /v1/solve``: the stateless face. A problem file's JSON in, an allocation file's JSON out."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, Request

from optalloc.core import MethodUnavailable, ProblemError
from optalloc.service.auth import require_token
from optalloc.service.errors import ApiError, error_responses, problem_error
from optalloc.service.models import AllocationFile, SolveRequest

router = APIRouter(tags=["solve"])


@router.post(
    "/v1/solve",
    response_model=AllocationFile,
    response_model_exclude_none=True,
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 413, 422, 429),
    summary="Solve a problem (stateless)",
)
def solve_problem(body: SolveRequest, request: Request) -> Any:
    """Allocate ``problem`` (exactly a problem file's JSON) with ``method`` within ``time_limit``
    seconds and answer exactly an allocation file's JSON (with its summary). Nothing is stored."""
    from optalloc.io import allocation_from_dict, allocation_to_dict, problem_from_dict
    from optalloc.solve import get_method, solve

    settings = request.app.state.settings
    if body.time_limit > settings.max_solve_time:
        raise ApiError(
            422, f"time_limit: {body.time_limit} is above the limit of {settings.max_solve_time}s", "time_limit"
        )
    try:
        get_method(body.method)
    except MethodUnavailable as err:
        raise ApiError(422, f"method: {err}", "method") from None
    try:
        problem = problem_from_dict(body.problem.model_dump(exclude_none=True))
    except ProblemError as err:
        raise problem_error(err, "problem") from None
    previous = None
    if body.previous is not None:
        try:
            previous = allocation_from_dict(body.previous.model_dump(exclude_none=True), "previous")
        except ProblemError as err:
            raise problem_error(err) from None
    gate: threading.BoundedSemaphore = request.app.state.solve_gate
    if not gate.acquire(blocking=False):
        raise ApiError(429, f"{settings.max_concurrent_solves} solves are running; try again later")
    try:
        answer = solve(
            problem,
            body.method,
            previous=previous,
            time_limit=body.time_limit,
            seed=body.seed,
            relative_gap=body.relative_gap,
            order=body.order,
            allow_migration=body.allow_migration,
            workers=1,
        )
    except MethodUnavailable as err:
        raise ApiError(422, f"method: {err}", "method") from None
    except ProblemError as err:
        raise problem_error(err) from None
    finally:
        gate.release()
    return allocation_to_dict(answer, problem)
