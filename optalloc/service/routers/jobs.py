"""Jobs: submit (one, or a batch), cancel, status, list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from optalloc.core import Job, ProblemError
from optalloc.service.auth import require_token
from optalloc.service.deps import cluster
from optalloc.service.errors import error_responses, problem_error
from optalloc.service.models import Accepted, BatchAccepted, JobBatch, JobList, JobOut, JobSpec
from optalloc.service.runtime import Cluster

router = APIRouter(tags=["jobs"])
JobName = Annotated[str, Path(min_length=1, max_length=253, description="the job's name")]
Clu = Annotated[Cluster, Depends(cluster)]
MUTATING = [Depends(require_token)]


def _job(spec: JobSpec, prefix: str = "") -> tuple[Job, bool]:
    from optalloc.io import job_from_dict

    data = spec.model_dump(exclude_none=True)
    try:
        return job_from_dict(data, prefix), spec.arrival is not None
    except ProblemError as err:
        raise problem_error(err) from None


@router.post(
    "/v1/jobs",
    response_model=Accepted,
    status_code=201,
    dependencies=MUTATING,
    responses={
        200: {"model": Accepted, "description": "an identical job exists"},
        **error_responses(401, 409, 413, 422, 503),
    },
    summary="Submit a job",
)
async def submit_job(body: JobSpec, response: Response, c: Clu) -> Any:
    """Submit a job (a problem file's job). It is stored before the answer (201), and waits for the loop:
    ``GET /v1/jobs/{name}`` says where it runs, or why it waits. Submitting an identical job again
    answers 200 (safe to retry); another job of that name is a 409."""
    job, arrival_given = _job(body)
    created = c.submit(job, arrival_given=arrival_given)
    if not created:
        response.status_code = 200
    return {"name": job.name, "created": created, "state": "pending" if created else "exists"}


@router.post(
    "/v1/jobs:batch",
    response_model=BatchAccepted,
    status_code=201,
    dependencies=MUTATING,
    responses=error_responses(401, 409, 413, 422, 503),
    summary="Submit several jobs at once",
)
def submit_jobs(body: JobBatch, c: Clu) -> Any:
    """Submit up to 10,000 jobs in one transaction: all are accepted, or none (the error names the
    first job at fault, ``jobs[3].gpus``). Identical jobs already known are skipped."""
    jobs = [_job(spec, f"jobs[{i}]") for i, spec in enumerate(body.jobs)]
    accepted, created = c.submit_many(jobs)
    return {"accepted": accepted, "created": created}


@router.get("/v1/jobs", response_model=JobList, responses=error_responses(422, 503), summary="List the jobs")
def list_jobs(
    c: Clu,
    state: Annotated[
        Literal["pending", "queued", "running"] | None, Query(description="only jobs in this state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """Jobs in submission order (``limit`` from ``offset``), with their state and, for waiting ones, why."""
    jobs, total = c.job_list(state, limit, offset)
    return {"jobs": jobs, "total": total}


@router.get(
    "/v1/jobs/{name:path}", response_model=JobOut, responses=error_responses(404, 422, 503), summary="One job's status"
)
def get_job(name: JobName, c: Clu) -> Any:
    """Where the job runs (``running``, its placements), or why it waits (``queued``, its reason:
    ``insufficient capacity``, ``fits no node``, ``not selected``, ...), or ``pending``."""
    return c.job_status(name)


@router.delete(
    "/v1/jobs/{name:path}",
    status_code=204,
    dependencies=MUTATING,
    responses=error_responses(401, 404, 422, 503),
    summary="Cancel (or complete) a job",
)
def cancel_job(name: JobName, c: Clu) -> Response:
    """The job is finished or cancelled: it leaves the queue, or its resources are freed."""
    c.cancel(name)
    return Response(status_code=204)
