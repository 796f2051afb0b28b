"""Errors of the HTTP API as RFC 9457 problem details, and the audit log of refusals.

Every error response has ``Content-Type: application/problem+json`` and a body::

    {"type": "urn:crdtsync:problem:<code>", "title": "...", "status": 403,
     "detail": "...", "code": "<code>"}

``code`` is stable and meant for programs; ``title`` and ``detail`` for people.
A 422 adds ``errors``: the validation errors (location, message, type).

Every refusal (4xx) is written to the ``crdtsync.audit`` logger as one
structured record with ``tenant``, ``credential``, ``method``, ``route``,
``status``, ``code`` and ``reason``; in JSON log mode those are top-level keys.
A database failure is a 503 ``store_unavailable`` and logged as an error.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from crdtsync import StoreError

from ..tenants import Principal

__all__ = [
    "MEDIA_TYPE",
    "PROBLEM_RESPONSES",
    "Problem",
    "ProblemDetail",
    "install_problem_handlers",
    "problem_doc",
]

audit = logging.getLogger("crdtsync.audit")
log = logging.getLogger("crdtsync.server")

MEDIA_TYPE = "application/problem+json"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, plus a stable machine-readable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """Raise in a route or dependency to answer with a problem+json response."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        credential: str = "",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.credential = credential
        self.errors = errors


def _problem_body(
    status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:crdtsync:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def _route(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path


def _audit(request: Request, status: int, code: str, reason: str, credential: str = "") -> None:
    principal: Principal | None = getattr(request.state, "principal", None)
    fields = {
        "event": "refused",
        "tenant": principal.tenant_id if principal else "",
        "credential": principal.credential_id if principal else credential,
        "method": request.method,
        "route": _route(request),
        "status": status,
        "code": code,
        "reason": reason,
    }
    audit.warning(
        "refused %s %s: %d %s (%s) tenant=%s credential=%s",
        fields["method"],
        fields["route"],
        status,
        code,
        reason,
        fields["tenant"] or "-",
        fields["credential"] or "-",
        extra=fields,
    )


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    credential: str = "",
) -> JSONResponse:
    if 400 <= status < 500:
        _audit(request, status, code, detail, credential)
    return JSONResponse(
        _problem_body(status, code, detail, errors),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every HTTP error of ``app`` with problem+json (and audit 4xx)."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, Problem):  # pragma: no cover (registered for Problem only)
            raise exc
        return problem_response(
            request,
            exc.status,
            exc.code,
            exc.detail,
            errors=exc.errors,
            headers=exc.headers,
            credential=exc.credential,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):  # pragma: no cover
            raise exc
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        detail = (
            "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
            or "invalid request"
        )
        return problem_response(request, 422, "validation_failed", detail, errors=errors)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, StarletteHTTPException):  # pragma: no cover
            raise exc
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(request, exc.status_code, code, str(exc.detail), headers=headers)

    async def on_store(request: Request, exc: Exception) -> JSONResponse:
        log.error("database failure on %s %s: %s", request.method, _route(request), exc)
        return problem_response(request, 503, "store_unavailable", "the database is unavailable")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreError, on_store)


def problem_doc(description: str) -> dict[str, Any]:
    """One entry of a route's ``responses=``: a problem+json body, described."""
    schema = {"$ref": "#/components/schemas/ProblemDetail"}
    content = {MEDIA_TYPE: {"schema": schema}}
    return {"model": ProblemDetail, "content": content, "description": description}


#: For ``responses=`` of routes: documents the problem bodies in OpenAPI.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: problem_doc(description)
    for status, description in (
        (400, "Malformed request (a body that does not parse)"),
        (401, "Missing, unknown, revoked or expired credential"),
        (403, "The credential's role may not do this"),
        (422, "Invalid request"),
    )
}
