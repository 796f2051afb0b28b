"""Authentication and role checks of the HTTP API, as FastAPI dependencies.

The HTTP API accepts a credential only as ``Authorization: Bearer <token>``
(never in the query string, where it would end up in access logs). The
authenticated :class:`~server.tenants.Principal` is put on ``request.state``
so that the audit log of a later refusal names the tenant and credential.

``require_role(*roles)`` admits the listed roles; a ``viewer`` is further
limited to safe methods (GET, HEAD) whatever the route lists, so a route can
never accidentally give a viewer write access.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..office import Office
from ..tenants import AuthenticationError, Principal, Role
from .problems import Problem

__all__ = [
    "API_PREFIX",
    "Authenticated",
    "OfficeRole",
    "Reader",
    "office_of",
    "authenticated",
    "require_role",
]

#: Where the office API lives. Routers are built with ``APIRouter(prefix=API_PREFIX)`` (not
#: given the prefix when included) so that a route's template is its full path (audit logs).
API_PREFIX = "/api/v1"

_bearer = HTTPBearer(auto_error=False, description="A crdtsync credential: cs_<id>_<secret>")
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crdtsync"'}


def office_of(request: Request) -> Office:
    """The running app's :class:`~server.office.Office`."""
    office: Office = request.app.state.office
    return office


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal of the request's bearer token, or a 401 problem."""
    if credentials is None or not credentials.credentials.strip():
        raise Problem(
            401,
            "missing_credentials",
            "send the credential as 'Authorization: Bearer <token>'",
            headers=_CHALLENGE,
        )
    try:
        principal = await office_of(request).tenants.authenticate(credentials.credentials.strip())
    except AuthenticationError as exc:
        raise Problem(
            401, exc.reason, str(exc), headers=_CHALLENGE, credential=exc.credential_id
        ) from exc
    request.state.principal = principal
    return principal


def require_role(*roles: Role | str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting principals whose role is in ``roles`` (viewers: GET/HEAD only)."""
    allowed = frozenset(Role(role) for role in roles)

    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(authenticated)]
    ) -> Principal:
        if principal.role not in allowed:
            raise Problem(
                403,
                "forbidden_role",
                f"a {principal.role.value} credential may not use this endpoint",
            )
        if principal.role is Role.VIEWER and request.method not in _SAFE_METHODS:
            raise Problem(403, "read_only", "a viewer credential is read-only")
        return principal

    return dependency


#: Any valid credential.
Authenticated = Annotated[Principal, Depends(authenticated)]
#: Office credentials only.
OfficeRole = Annotated[Principal, Depends(require_role(Role.OFFICE))]
#: Office or viewer (read-only endpoints).
Reader = Annotated[Principal, Depends(require_role(Role.OFFICE, Role.VIEWER))]
