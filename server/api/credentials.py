"""Credential management: device credentials for technicians, office and viewer keys.

| endpoint | roles |
|---|---|
| ``GET /me`` | any valid credential |
| ``POST /devices`` | office: issue a device credential; the token is in this response only |
| ``GET /devices``, ``GET /devices/{id}`` | office, viewer |
| ``DELETE /devices/{id}`` | office: revoke (open connections are cut by ``on_revoke``) |
| ``POST /keys`` | office: issue an office or viewer key; the token is in this response only |
| ``GET /keys``, ``GET /keys/{id}`` | office |
| ``DELETE /keys/{id}`` | office; 409 for the tenant's last active office key |

Every id is scoped to the caller's tenant: another tenant's id is a 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from ..tenants import Credential, IssuedCredential, LastOfficeCredential, NotFound, Role
from .auth import API_PREFIX, Authenticated, OfficeRole, Reader, office_of
from .problems import PROBLEM_RESPONSES, Problem, problem_doc

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["credentials"], responses=PROBLEM_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such credential in this tenant")
}


class Me(BaseModel):
    tenant_id: str
    credential_id: str
    role: Role
    technician: str | None


class CredentialOut(BaseModel):
    id: str
    role: Role
    technician: str | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, credential: Credential) -> CredentialOut:
        return cls(
            id=credential.id,
            role=credential.role,
            technician=credential.technician,
            label=credential.label,
            created_at=credential.created_at,
            expires_at=credential.expires_at,
            revoked_at=credential.revoked_at,
        )


class IssuedOut(CredentialOut):
    token: str = Field(description="The secret token: shown here once, never again.")

    @classmethod
    def issued(cls, issued: IssuedCredential) -> IssuedOut:
        return cls(**CredentialOut.of(issued.credential).model_dump(), token=issued.token)


class CredentialList(BaseModel):
    items: list[CredentialOut]


class DeviceCreate(BaseModel):
    technician: str = Field(pattern=r"^[A-Za-z0-9._@+\-]{1,64}$")
    label: str = Field("", max_length=200)
    expires_at: AwareDatetime | None = None


class KeyCreate(BaseModel):
    role: Literal["office", "viewer"]
    label: str = Field("", max_length=200)
    expires_at: AwareDatetime | None = None


@router.get("/me", response_model=Me)
async def me(principal: Authenticated) -> Me:
    """Who the presented credential is."""
    return Me(
        tenant_id=principal.tenant_id,
        credential_id=principal.credential_id,
        role=principal.role,
        technician=principal.technician,
    )


async def _issue(
    request: Request, tenant_id: str, role: Role, body: DeviceCreate | KeyCreate
) -> IssuedOut:
    technician = body.technician if isinstance(body, DeviceCreate) else None
    try:
        issued = await office_of(request).tenants.create_credential(
            tenant_id, role, technician=technician, label=body.label, expires_at=body.expires_at
        )
    except ValueError as exc:
        raise Problem(422, "invalid_value", str(exc)) from exc
    return IssuedOut.issued(issued)


async def _get(
    request: Request, tenant_id: str, credential_id: str, roles: set[Role]
) -> Credential:
    try:
        credential = await office_of(request).tenants.get_credential(tenant_id, credential_id)
    except NotFound as exc:
        raise Problem(404, "not_found", f"no credential {credential_id}") from exc
    if credential.role not in roles:
        raise Problem(404, "not_found", f"no credential {credential_id}")
    return credential


async def _revoke(request: Request, tenant_id: str, credential_id: str, roles: set[Role]) -> None:
    await _get(request, tenant_id, credential_id, roles)
    try:
        await office_of(request).tenants.revoke(tenant_id, credential_id, keep_last_office=True)
    except LastOfficeCredential as exc:
        raise Problem(
            409, "last_office_credential", "issue another office key before revoking this one"
        ) from exc


# -- devices ---------------------------------------------------------------------------------


@router.post("/devices", status_code=201, response_model=IssuedOut)
async def create_device(request: Request, body: DeviceCreate, principal: OfficeRole) -> IssuedOut:
    """Issue a device credential bound to a technician (optionally expiring)."""
    return await _issue(request, principal.tenant_id, Role.DEVICE, body)


@router.get("/devices", response_model=CredentialList)
async def list_devices(
    request: Request, principal: Reader, include_revoked: bool = False
) -> CredentialList:
    credentials = await office_of(request).tenants.list_credentials(
        principal.tenant_id, (Role.DEVICE,), include_revoked=include_revoked
    )
    return CredentialList(items=[CredentialOut.of(c) for c in credentials])


@router.get("/devices/{credential_id}", response_model=CredentialOut, responses=_NOT_FOUND)
async def get_device(request: Request, credential_id: str, principal: Reader) -> CredentialOut:
    return CredentialOut.of(await _get(request, principal.tenant_id, credential_id, {Role.DEVICE}))


@router.delete("/devices/{credential_id}", status_code=204, responses=_NOT_FOUND)
async def revoke_device(request: Request, credential_id: str, principal: OfficeRole) -> Response:
    """Revoke a device credential (idempotent); its open connections are closed."""
    await _revoke(request, principal.tenant_id, credential_id, {Role.DEVICE})
    return Response(status_code=204)


# -- office and viewer keys ------------------------------------------------------------------


@router.post("/keys", status_code=201, response_model=IssuedOut)
async def create_key(request: Request, body: KeyCreate, principal: OfficeRole) -> IssuedOut:
    """Issue an office (full) or viewer (read-only) key."""
    return await _issue(request, principal.tenant_id, Role(body.role), body)


@router.get("/keys", response_model=CredentialList)
async def list_keys(
    request: Request, principal: OfficeRole, include_revoked: bool = False
) -> CredentialList:
    credentials = await office_of(request).tenants.list_credentials(
        principal.tenant_id, (Role.OFFICE, Role.VIEWER), include_revoked=include_revoked
    )
    return CredentialList(items=[CredentialOut.of(c) for c in credentials])


@router.get("/keys/{credential_id}", response_model=CredentialOut, responses=_NOT_FOUND)
async def get_key(request: Request, credential_id: str, principal: OfficeRole) -> CredentialOut:
    roles = {Role.OFFICE, Role.VIEWER}
    return CredentialOut.of(await _get(request, principal.tenant_id, credential_id, roles))


@router.delete(
    "/keys/{credential_id}",
    status_code=204,
    responses={
        **_NOT_FOUND,
        409: problem_doc("The tenant's last active office key"),
    },
)
async def revoke_key(request: Request, credential_id: str, principal: OfficeRole) -> Response:
    await _revoke(request, principal.tenant_id, credential_id, {Role.OFFICE, Role.VIEWER})
    return Response(status_code=204)
