"""What a credential may see of the work orders, and the errors work-order routes share.

Access rules on the HTTP API (the sync endpoints enforce the same through
:class:`crdtsync.service.FieldService`):

* ``office``: everything of its tenant; ``viewer``: the same, GET only.
* ``device``: only the work orders on its technician's planning
  (``planning/{tech}``), their attachments, and the settings (read-only).
  Any other work order, of its tenant or another, is a **404**, the same answer
  as for an id that does not exist: a device must not learn which work orders
  exist beyond its own (a 403 would confirm the id). Routes a device may never
  use (writes, memos, submission records) are a 403 ``forbidden_role``.

Every refusal goes through :class:`~server.api.problems.Problem`, so it is a
problem+json body and an audit log record.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Request

from crdtsync import Principal as RelayPrincipal
from crdtsync import Relay
from crdtsync.service import FieldService
from crdtsync.workorder import InvalidValue, WorkOrderError

from ..tenants import Principal, Role
from ..viewrows import WorkOrderView
from ..views import WorkOrderViews
from ..workorders import NotSent, OfficeWorkOrders, WorkOrderExists, WorkOrderNotFound
from .auth import require_role
from .problems import Problem, problem_doc

__all__ = [
    "Anyone",
    "NOT_FOUND",
    "caught_up",
    "domain_problem",
    "relay_of",
    "views_of",
    "visible_ids",
    "visible_view",
    "workorders_of",
]

#: Office, viewer (GET only) or device credentials.
Anyone = Annotated[Principal, Depends(require_role(Role.OFFICE, Role.VIEWER, Role.DEVICE))]

#: How long a write waits for the views to show it before answering 503.
CATCH_UP_SECONDS = 10.0


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such work order for this credential")
}


def relay_of(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


def views_of(request: Request) -> WorkOrderViews:
    views: WorkOrderViews = request.app.state.views
    return views


def workorders_of(request: Request) -> OfficeWorkOrders:
    workorders: OfficeWorkOrders = request.app.state.workorders
    return workorders


async def visible_ids(request: Request, principal: Principal) -> frozenset[str] | None:
    """The work-order ids a device may read over HTTP (its planning, not what was released
    from it: only its sync connection may still send changes to those); None: every id."""
    if principal.role is not Role.DEVICE:
        return None
    service: FieldService = request.app.state.service
    who = RelayPrincipal(
        role="device",
        tenant=principal.tenant_id,
        subject=principal.technician or "",
        credential=principal.credential_id,
    )
    return await service.assigned(who, released=False)


def not_found(ident: str) -> Problem:
    return Problem(404, "not_found", f"no work order {ident}")


async def visible_view(request: Request, principal: Principal, ident: str) -> WorkOrderView:
    """The view of ``ident`` if the principal may see it, else a 404 problem."""
    allowed = await visible_ids(request, principal)
    if allowed is not None and ident not in allowed:
        raise not_found(ident)
    view = await views_of(request).get(principal.tenant_id, ident)
    if view is None:
        raise not_found(ident)
    return view


def domain_problem(exc: WorkOrderError | WorkOrderNotFound | WorkOrderExists | NotSent) -> Problem:
    """The problem for a refusal of the domain or the office operations."""
    if isinstance(exc, InvalidValue):
        error = {"loc": ["body", *exc.field.split(".")], "msg": exc.reason, "type": "invalid_value"}
        return Problem(422, "invalid_value", str(exc), errors=[error])
    if isinstance(exc, WorkOrderNotFound):
        return Problem(404, "not_found", str(exc))
    if isinstance(exc, WorkOrderExists):
        return Problem(409, "workorder_exists", str(exc))
    if isinstance(exc, NotSent):
        return Problem(409, "not_sent", str(exc))
    return Problem(409, "workorder_refused", str(exc))


async def caught_up(request: Request) -> None:
    """Wait until the views show every committed write (a 503 problem if they fall behind)."""
    try:
        async with asyncio.timeout(CATCH_UP_SECONDS):
            await views_of(request).flush()
    except TimeoutError as exc:
        raise Problem(
            503, "views_behind", "the change is stored; the work-order views are behind"
        ) from exc
