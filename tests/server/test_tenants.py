"""Tenants and credentials: issuing, authenticating, expiring and revoking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.office import SCHEMAS
from server.officedb import OfficeDB
from server.tenants import (
    CredentialExpired,
    CredentialRevoked,
    LastOfficeCredential,
    NotFound,
    Principal,
    Role,
    Tenants,
    UnknownCredential,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tenants(tmp_path: Path, clock: Clock) -> AsyncIterator[Tenants]:
    async with OfficeDB(tmp_path / "relay.db", SCHEMAS) as db:
        yield Tenants(db, clock=clock)


async def test_issued_tokens_authenticate_as_their_principal(tenants: Tenants) -> None:
    tenant = await tenants.create_tenant("Acme Service")
    office = await tenants.create_credential(tenant.id, Role.OFFICE, label="desk")
    device = await tenants.create_credential(tenant.id, "device", technician="tech-7")
    assert office.token.startswith(f"cs_{office.credential.id}_")
    assert await tenants.authenticate(office.token) == Principal(
        tenant.id, office.credential.id, Role.OFFICE
    )
    assert await tenants.authenticate(device.token) == Principal(
        tenant.id, device.credential.id, Role.DEVICE, "tech-7"
    )
    assert [t.name for t in await tenants.list_tenants()] == ["Acme Service"]
    assert (await tenants.get_tenant(tenant.id)).name == "Acme Service"


async def test_secrets_are_not_stored_in_clear(tenants: Tenants, tmp_path: Path) -> None:
    tenant = await tenants.create_tenant("Acme")
    issued = await tenants.create_credential(tenant.id, Role.OFFICE)
    secret = issued.token.split("_", 2)[2]
    async with tenants.db.read() as tx:
        row = await tx.fetchone("SELECT secret_sha256 FROM credentials")
    assert row is not None
    assert secret not in row[0]
    await tenants.db.ping()
    files = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.iterdir()])
    assert all(secret.encode() not in data for data in files)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "Bearer x",
        "cs_",
        "cs_0123456789abcdef",
        "cs_0123456789abcdef_",
        "cs_not-hex-at-all__secret",
        "cs_0123456789abcdef_wrong-secret",
    ],
)
async def test_malformed_or_unknown_tokens_are_unknown(tenants: Tenants, token: str) -> None:
    with pytest.raises(UnknownCredential):
        await tenants.authenticate(token)


async def test_a_wrong_secret_for_a_real_id_is_unknown(tenants: Tenants) -> None:
    tenant = await tenants.create_tenant("Acme")
    issued = await tenants.create_credential(tenant.id, Role.OFFICE)
    with pytest.raises(UnknownCredential) as caught:
        await tenants.authenticate(f"cs_{issued.credential.id}_{'x' * 43}")
    assert caught.value.credential_id == issued.credential.id


async def test_expired_credentials_are_refused(tenants: Tenants, clock: Clock) -> None:
    tenant = await tenants.create_tenant("Acme")
    issued = await tenants.create_credential(
        tenant.id, Role.VIEWER, expires_at=clock.now + timedelta(hours=1)
    )
    await tenants.authenticate(issued.token)
    clock.now += timedelta(hours=1)
    with pytest.raises(CredentialExpired):
        await tenants.authenticate(issued.token)
    with pytest.raises(ValueError, match="past"):
        await tenants.create_credential(tenant.id, Role.VIEWER, expires_at=clock.now)


async def test_revocation_is_permanent_idempotent_and_notifies_once(tenants: Tenants) -> None:
    tenant = await tenants.create_tenant("Acme")
    device = await tenants.create_credential(tenant.id, Role.DEVICE, technician="tech-7")
    seen_sync: list[str] = []
    seen_async: list[str] = []

    async def async_listener(credential_id: str) -> None:
        seen_async.append(credential_id)

    tenants.on_revoke.append(seen_sync.append)
    tenants.on_revoke.append(async_listener)
    revoked = await tenants.revoke(tenant.id, device.credential.id)
    again = await tenants.revoke(tenant.id, device.credential.id)
    assert revoked.revoked_at is not None
    assert again.revoked_at == revoked.revoked_at
    assert seen_sync == seen_async == [device.credential.id]
    with pytest.raises(CredentialRevoked):
        await tenants.authenticate(device.token)
    assert await tenants.list_credentials(tenant.id) == []
    listed = await tenants.list_credentials(tenant.id, include_revoked=True)
    assert [c.id for c in listed] == [device.credential.id]


async def test_credentials_are_scoped_to_their_tenant(tenants: Tenants) -> None:
    acme = await tenants.create_tenant("Acme")
    other = await tenants.create_tenant("Other")
    key = await tenants.create_credential(acme.id, Role.OFFICE)
    with pytest.raises(NotFound):
        await tenants.get_credential(other.id, key.credential.id)
    with pytest.raises(NotFound):
        await tenants.revoke(other.id, key.credential.id)
    with pytest.raises(NotFound):
        await tenants.create_credential("0000000000000000", Role.OFFICE)
    with pytest.raises(NotFound):
        await tenants.get_tenant("0000000000000000")
    await tenants.authenticate(key.token)


async def test_the_last_office_key_can_be_protected(tenants: Tenants) -> None:
    tenant = await tenants.create_tenant("Acme")
    first = await tenants.create_credential(tenant.id, Role.OFFICE)
    with pytest.raises(LastOfficeCredential):
        await tenants.revoke(tenant.id, first.credential.id, keep_last_office=True)
    await tenants.authenticate(first.token)
    second = await tenants.create_credential(tenant.id, Role.OFFICE)
    await tenants.revoke(tenant.id, first.credential.id, keep_last_office=True)
    with pytest.raises(LastOfficeCredential):
        await tenants.revoke(tenant.id, second.credential.id, keep_last_office=True)


@pytest.mark.parametrize(
    ("role", "technician", "label"),
    [
        (Role.DEVICE, None, ""),
        (Role.OFFICE, "tech-7", ""),
        (Role.DEVICE, "tech 7", ""),
        (Role.DEVICE, "x" * 65, ""),
        (Role.VIEWER, None, "x" * 201),
    ],
)
async def test_invalid_credentials_are_refused(
    tenants: Tenants, role: Role, technician: str | None, label: str
) -> None:
    tenant = await tenants.create_tenant("Acme")
    with pytest.raises(ValueError, match=r"technician|label"):
        await tenants.create_credential(tenant.id, role, technician=technician, label=label)


async def test_tenant_names_are_checked(tenants: Tenants) -> None:
    for name in ("", "   ", "x" * 201):
        with pytest.raises(ValueError, match="tenant name"):
            await tenants.create_tenant(name)
