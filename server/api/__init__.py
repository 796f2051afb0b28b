"""The office's HTTP API, mounted under ``/api/v1`` by :func:`install_api`.

Routers (each module's docstring lists its endpoints and roles):
``credentials`` (``/me``, ``/devices``, ``/keys``), ``workorders``
(``/workorders``: create, list, read, edit, reopen, processed), ``records``
(memo, submission records, signatures), ``attachments`` (``/attachments``),
``policy`` (``/settings``), ``feed`` (``/changes``, ``/events``), ``hooks``
(``/webhooks``). Authentication is ``Authorization: Bearer`` only; errors are
RFC 9457 problem+json (``problems``); who may reach which work order is
``access``. Routes reach the running :class:`~server.office.Office` through
``app.state.office`` and the relay, views and office operations through
``app.state.relay``, ``app.state.views`` and ``app.state.workorders``.

Routers are built as ``APIRouter(prefix=API_PREFIX)``, use the dependencies in
``server.api.auth`` and are added with ``app.include_router(router)``.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import attachments, credentials, feed, hooks, policy, records, workorders
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
    for module in (credentials, workorders, records, attachments, policy, feed, hooks):
        app.include_router(module.router)
