"""The office's HTTP API, mounted under ``/api/v1`` by :func:`install_api`.

Routers (each module's docstring lists its endpoints and roles):
``credentials`` (``/me``, ``/devices``, ``/keys``), ``feed`` (``/changes``,
``/events``), ``hooks`` (``/webhooks``). Authentication is ``Authorization:
Bearer`` only; errors are RFC 9457 problem+json (``problems``). Routes reach
the running :class:`~server.office.Office` through ``app.state.office``.

More routers (work orders, settings, submissions) are built as
``APIRouter(prefix=API_PREFIX)``, use the dependencies in ``server.api.auth``
and are added with ``app.include_router(router)``.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import credentials, feed, hooks
from .auth import (
    API_PREFIX,
    Authenticated,
    OfficeRole,
    Reader,
    authenticated,
    office_of,
    require_role,
)
from .problems import PROBLEM_RESPONSES, Problem, ProblemDetail, install_problem_handlers

__all__ = [
    "API_PREFIX",
    "PROBLEM_RESPONSES",
    "Authenticated",
    "OfficeRole",
    "Problem",
    "ProblemDetail",
    "Reader",
    "authenticated",
    "install_api",
    "office_of",
    "require_role",
]


def install_api(app: FastAPI) -> None:
    """Mount the office API routers on ``app`` and answer its errors with problem+json."""
    install_problem_handlers(app)
    for module in (credentials, feed, hooks):
        app.include_router(module.router)
