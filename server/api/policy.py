"""The tenant's settings document over HTTP: versioned policy and per-technician overrides.

| endpoint | roles |
|---|---|
| ``GET /settings`` | office, viewer, device (a device's ``effective`` is its technician's) |
| ``POST /settings/policies`` | office: publish a new immutable version (``max + 1``) |
| ``PUT /settings/current`` | office: make a published version the company's |
| ``PUT /settings/overrides/{technician}`` | office: a technician uses another version |
| ``DELETE /settings/overrides/{technician}`` | office: back to the current version |

Writes go through the relay's replica of ``settings`` (:meth:`crdtsync.Relay.edit`),
the one writer that numbering versions needs: a version is picked and written in
one synchronous step, so two concurrent publications get two numbers. Devices
receive the result when they sync; the relay judges submissions by it at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pycrdt import Doc

from crdtsync.workorder import (
    SETTINGS_DOCUMENT,
    InvalidValue,
    Policy,
    Settings,
    SkeletonError,
    WorkOrderError,
    create_settings,
    effective_policy,
    publish_policy,
    schema_of,
    set_current,
    set_override,
)
from crdtsync.workorder import Problem as DomainProblem

from ..tenants import Principal, Role
from .access import Anyone, domain_problem, relay_of
from .auth import API_PREFIX, OfficeRole
from .models import ID_PATTERN, PolicyCreated, PolicyIn, SettingsOut, VersionIn
from .problems import PROBLEM_RESPONSES, Problem, problem_doc

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["settings"], responses=PROBLEM_RESPONSES)

Technician = Annotated[str, Path(pattern=ID_PATTERN)]
_NO_SETTINGS: dict[int | str, dict[str, Any]] = {409: problem_doc("No policy is published yet")}


def _settings_out(doc: Doc[Any], technician: str | None) -> SettingsOut:
    settings, problems = Settings.from_doc(doc)
    effective: Policy | None = None
    try:
        effective = effective_policy(doc, technician)
    except InvalidValue as exc:
        problems.append(DomainProblem(path=exc.field, message=exc.reason))
    return SettingsOut(
        published=schema_of(doc) is not None,
        current=settings.current,
        versions=settings.versions,
        overrides=settings.overrides,
        effective=effective,
        problems=problems,
    )


async def _read(request: Request, principal: Principal) -> SettingsOut:
    doc = await relay_of(request).read(SETTINGS_DOCUMENT, tenant=principal.tenant_id)
    technician = principal.technician if principal.role is Role.DEVICE else None
    return _settings_out(doc, technician)


async def _change(request: Request, principal: Principal, change: Any) -> None:
    def guarded(doc: Doc[Any]) -> None:
        if schema_of(doc) is None:
            raise SkeletonError("settings", "no policy is published yet")
        change(doc)

    try:
        await relay_of(request).edit(SETTINGS_DOCUMENT, guarded, tenant=principal.tenant_id)
    except SkeletonError as exc:
        raise Problem(409, "no_settings", "publish a policy first") from exc
    except WorkOrderError as exc:
        raise domain_problem(exc) from exc


@router.get("/settings", response_model=SettingsOut)
async def get_settings(request: Request, principal: Anyone) -> SettingsOut:
    """Every published policy version, the current one, the overrides, and the policy in
    force for the caller (for a device: its technician's, override included)."""
    return await _read(request, principal)


@router.post("/settings/policies", status_code=201, response_model=PolicyCreated)
async def publish(
    request: Request,
    body: PolicyIn,
    principal: OfficeRole,
    make_current: Annotated[bool, Query(description="Make it the company's policy.")] = True,
) -> PolicyCreated:
    """Publish ``body`` as a new immutable version (its ``version`` field is ignored)."""
    policy = Policy.model_validate(body.model_dump())

    def change(doc: Doc[Any]) -> int:
        if schema_of(doc) is None:
            version = create_settings(doc, policy)  # the first version is always current
        else:
            version = publish_policy(doc, policy, make_current=make_current)
        return version

    try:
        version = await relay_of(request).edit(
            SETTINGS_DOCUMENT, change, tenant=principal.tenant_id
        )
    except WorkOrderError as exc:
        raise domain_problem(exc) from exc
    return PolicyCreated(version=version, current=(await _read(request, principal)).current)


@router.put("/settings/current", response_model=SettingsOut, responses=_NO_SETTINGS)
async def put_current(request: Request, body: VersionIn, principal: OfficeRole) -> SettingsOut:
    """Make the published ``version`` the company's policy (422 if it is not published)."""
    await _change(request, principal, lambda doc: set_current(doc, body.version))
    return await _read(request, principal)


@router.put("/settings/overrides/{technician}", response_model=SettingsOut, responses=_NO_SETTINGS)
async def put_override(
    request: Request, technician: Technician, body: VersionIn, principal: OfficeRole
) -> SettingsOut:
    """Make ``technician`` work under the published ``version``."""
    await _change(request, principal, lambda doc: set_override(doc, technician, body.version))
    return await _read(request, principal)


@router.delete("/settings/overrides/{technician}", status_code=204, responses=_NO_SETTINGS)
async def delete_override(
    request: Request, technician: Technician, principal: OfficeRole
) -> Response:
    """Back to the current version for ``technician`` (idempotent)."""
    await _change(request, principal, lambda doc: set_override(doc, technician, None))
    return Response(status_code=204)
