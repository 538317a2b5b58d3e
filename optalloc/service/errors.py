"""Error answers: every bad request is a 4xx with the field path at fault, never a stack trace.

One JSON shape for every error (:class:`~optalloc.service.models.ErrorOut`): ``status``, ``detail`` (one
sentence), ``field`` (the path, as in a problem file: ``jobs[3].gpus``) and ``errors`` (every field at
fault). Unexpected failures are answered 500 ``internal error`` with an id that is also in the log,
next to the traceback, and counted in ``optalloc_service_internal_errors_total``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from optalloc.core import ProblemError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: ``status``, one sentence, and the field at fault (if one is)."""

    def __init__(self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers


def body(status: int, detail: str, field: str | None = None, errors: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "detail": detail, "field": field, "errors": list(errors)}
    if field is not None and not errors:
        out["errors"] = [{"field": field, "message": detail}]
    return out


def problem_error(err: ProblemError, prefix: str = "", status: int = 422) -> ApiError:
    """A core :class:`ProblemError` as an answer, its field path under ``prefix`` (``problem``)."""
    if prefix:
        err = err.prefixed(prefix)
    return ApiError(status, str(err), err.field or None)


def loc_path(loc: Sequence[Any]) -> str:
    """A pydantic error location as a problem-file path: ``("body", "jobs", 3, "gpus")`` -> ``jobs[3].gpus``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if parts[0] == "body" or len(parts) > 1 else parts
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def install(app: FastAPI, on_internal_error: Any = None) -> None:
    """Register the handlers that give every error the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.status, exc.detail, exc.field), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ProblemError)
    async def _problem_error(request: Request, exc: ProblemError) -> JSONResponse:
        return JSONResponse(body(422, str(exc), exc.field or None), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            path = loc_path(e.get("loc", ()))
            kind = e.get("type", "")
            if kind == "json_invalid":
                message = "the body is not valid JSON" + (f" ({e['ctx']['error']})" if e.get("ctx") else "")
                path = ""
            elif kind == "missing":
                message = f"{path}: is required" if path else "is required"
            else:
                shown = "" if kind in ("extra_forbidden",) else f"{_short(e.get('input'))} "
                msg = str(e.get("msg", "is not valid"))
                msg = msg.removeprefix("Value error, ")
                msg = "is not a known field" if kind == "extra_forbidden" else msg
                message = f"{path}: {shown}{msg}" if path else f"{shown}{msg}"
            errors.append({"field": path, "message": message})
        first = errors[0] if errors else {"field": "", "message": "the request is not valid"}
        detail = first["message"] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        return JSONResponse(body(422, detail, first["field"] or None, errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return JSONResponse(body(exc.status_code, detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        ident = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", ident, request.method, request.url.path, exc_info=exc)
        if on_internal_error is not None:
            on_internal_error()
        return JSONResponse(body(500, f"internal error (logged as {ident})"), status_code=500)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route may answer (all with :class:`ErrorOut`)."""
    from optalloc.service.models import ErrorOut

    text = {
        400: "bad request",
        401: "missing or wrong bearer token",
        404: "no such object",
        409: "conflicts with the current state",
        413: "request body too large",
        422: "a field is not valid (its path is in field)",
        429: "too many solves at once",
        503: "not ready",
    }
    return {code: {"model": ErrorOut, "description": text.get(code, "error")} for code in codes}
