"""The office API's authentication, roles, problem bodies, audit log and credential routes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.api import OfficeRole, Reader, install_api
from server.office import Office
from server.tenants import Role

from .conftest import Tenant, bearer, make_tenant

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:crdtsync:problem:{code}"
    assert body["title"]
    assert body["detail"]
    return body


async def issue_device(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/devices", json={"technician": "tech-7", **body}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_no_credential_is_a_401_problem(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/api/v1/devices")
    assert_problem(response, 401, "missing_credentials")
    assert response.headers["www-authenticate"].startswith("Bearer")
    # The HTTP API does not take tokens from the query string.
    response = await client.get("/api/v1/devices", params={"token": tenant.office_token})
    assert_problem(response, 401, "missing_credentials")
    response = await client.get("/api/v1/devices", headers={"Authorization": "Basic abc"})
    assert_problem(response, 401, "missing_credentials")


async def test_bad_tokens_are_401_with_a_reason(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/api/v1/me", headers=bearer("cs_0123456789abcdef_nope"))
    assert_problem(response, 401, "unknown_credential")
    device = await issue_device(client, tenant)
    await client.delete(f"/api/v1/devices/{device['id']}", headers=tenant.headers)
    response = await client.get("/api/v1/me", headers=bearer(device["token"]))
    assert_problem(response, 401, "credential_revoked")


async def test_office_issues_lists_and_revokes_device_credentials(
    client: httpx.AsyncClient, office: Office, tenant: Tenant
) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    device = await issue_device(client, tenant, label="tablet 7", expires_at=expires.isoformat())
    assert device["role"] == "device"
    assert device["technician"] == "tech-7"
    assert device["token"].startswith(f"cs_{device['id']}_")
    me = (await client.get("/api/v1/me", headers=bearer(device["token"]))).json()
    assert me == {
        "tenant_id": tenant.id,
        "credential_id": device["id"],
        "role": "device",
        "technician": "tech-7",
    }
    listed = (await client.get("/api/v1/devices", headers=tenant.headers)).json()["items"]
    assert [d["id"] for d in listed] == [device["id"]]
    assert "token" not in listed[0]
    one = await client.get(f"/api/v1/devices/{device['id']}", headers=tenant.headers)
    assert one.json()["label"] == "tablet 7"

    revoked: list[str] = []
    office.tenants.on_revoke.append(revoked.append)
    for _ in range(2):  # idempotent: 204 both times, listeners told once
        response = await client.delete(f"/api/v1/devices/{device['id']}", headers=tenant.headers)
        assert response.status_code == 204
    assert revoked == [device["id"]]
    assert (await client.get("/api/v1/devices", headers=tenant.headers)).json()["items"] == []
    listed = await client.get(
        "/api/v1/devices", params={"include_revoked": "true"}, headers=tenant.headers
    )
    assert listed.json()["items"][0]["revoked_at"] is not None


async def test_roles(client: httpx.AsyncClient, tenant: Tenant) -> None:
    viewer = (
        await client.post("/api/v1/keys", json={"role": "viewer"}, headers=tenant.headers)
    ).json()
    device = await issue_device(client, tenant)
    as_viewer, as_device = bearer(viewer["token"]), bearer(device["token"])
    assert (await client.get("/api/v1/devices", headers=as_viewer)).status_code == 200
    response = await client.post("/api/v1/devices", json={"technician": "x"}, headers=as_viewer)
    assert_problem(response, 403, "forbidden_role")
    assert_problem(await client.get("/api/v1/keys", headers=as_viewer), 403, "forbidden_role")
    assert_problem(await client.get("/api/v1/devices", headers=as_device), 403, "forbidden_role")
    assert_problem(
        await client.delete(f"/api/v1/devices/{device['id']}", headers=as_device),
        403,
        "forbidden_role",
    )


async def test_viewers_may_only_read_whatever_a_route_admits(tmp_path: Any) -> None:
    """``require_role`` keeps viewers to GET/HEAD even on a route that lists them."""
    from .conftest import fast_settings, running_app

    async with running_app(fast_settings(tmp_path / "relay.db")) as (app, client):
        tenant = await make_tenant(app.state.office)
        extra = FastAPI()

        @extra.post("/api/v1/careless")
        async def careless(principal: Reader) -> dict[str, str]:
            return {"role": principal.role.value}

        @extra.get("/api/v1/office-only")
        async def office_only(principal: OfficeRole) -> dict[str, str]:
            return {"role": principal.role.value}

        app.router.routes.extend(extra.router.routes)
        viewer = await app.state.office.tenants.create_credential(tenant.id, Role.VIEWER)
        response = await client.post("/api/v1/careless", headers=bearer(viewer.token))
        assert_problem(response, 403, "read_only")
        response = await client.post("/api/v1/careless", headers=tenant.headers)
        assert response.json() == {"role": "office"}
        assert install_api is not None


async def test_ids_of_other_tenants_are_not_found(
    client: httpx.AsyncClient, office: Office, tenant: Tenant
) -> None:
    other = await make_tenant(office, "Other")
    device = await issue_device(client, tenant)
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, f"/api/v1/devices/{device['id']}", headers=other.headers
        )
        assert_problem(response, 404, "not_found")
    # A key id is not a device id, and the other way round.
    keys = (await client.get("/api/v1/keys", headers=tenant.headers)).json()["items"]
    response = await client.get(f"/api/v1/devices/{keys[0]['id']}", headers=tenant.headers)
    assert_problem(response, 404, "not_found")
    response = await client.get(f"/api/v1/keys/{device['id']}", headers=tenant.headers)
    assert_problem(response, 404, "not_found")
    assert_problem(
        await client.get("/api/v1/nothing-here", headers=tenant.headers), 404, "not_found"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"technician": "tech 7"}, "validation_failed"),
        ({}, "validation_failed"),
        ({"technician": "tech-7", "expires_at": "2024-01-01T00:00:00"}, "validation_failed"),
        ({"technician": "tech-7", "expires_at": "2000-01-01T00:00:00Z"}, "invalid_value"),
    ],
)
async def test_invalid_requests_are_422_problems(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], code: str
) -> None:
    response = await client.post("/api/v1/devices", json=body, headers=tenant.headers)
    problem = assert_problem(response, 422, code)
    if code == "validation_failed":
        assert problem["errors"]
        assert all("loc" in e for e in problem["errors"])


async def test_keys_and_the_last_office_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    me = (await client.get("/api/v1/me", headers=tenant.headers)).json()
    response = await client.delete(f"/api/v1/keys/{me['credential_id']}", headers=tenant.headers)
    assert_problem(response, 409, "last_office_credential")
    second = (
        await client.post(
            "/api/v1/keys", json={"role": "office", "label": "backup"}, headers=tenant.headers
        )
    ).json()
    response = await client.delete(f"/api/v1/keys/{me['credential_id']}", headers=tenant.headers)
    assert response.status_code == 204
    response = await client.get("/api/v1/keys", headers=bearer(second["token"]))
    assert [k["label"] for k in response.json()["items"]] == ["backup"]
    response = await client.post(
        "/api/v1/keys", json={"role": "device"}, headers=bearer(second["token"])
    )
    assert_problem(response, 422, "validation_failed")


async def test_every_refusal_is_audited(
    client: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    viewer = (
        await client.post("/api/v1/keys", json={"role": "viewer"}, headers=tenant.headers)
    ).json()
    caplog.set_level(logging.WARNING, logger="crdtsync.audit")
    await client.post("/api/v1/devices", json={"technician": "x"}, headers=bearer(viewer["token"]))
    await client.get("/api/v1/devices", headers=bearer("cs_0123456789abcdef_x"))
    records = [r for r in caplog.records if r.name == "crdtsync.audit"]
    assert len(records) == 2
    forbidden, unknown = records
    assert forbidden.__dict__["tenant"] == tenant.id
    assert forbidden.__dict__["credential"] == viewer["id"]
    assert forbidden.__dict__["route"] == "/api/v1/devices"
    assert forbidden.__dict__["method"] == "POST"
    assert forbidden.__dict__["code"] == "forbidden_role"
    assert forbidden.__dict__["status"] == 403
    assert unknown.__dict__["credential"] == "0123456789abcdef"
    assert unknown.__dict__["code"] == "unknown_credential"
    assert unknown.__dict__["tenant"] == ""


async def test_openapi_documents_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/me",
        "/api/v1/devices",
        "/api/v1/devices/{credential_id}",
        "/api/v1/keys",
        "/api/v1/changes",
        "/api/v1/events",
        "/api/v1/webhooks",
        "/api/v1/webhooks/{webhook_id}",
    ):
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "ProblemDetail" in schema["components"]["schemas"]
    assert "401" in paths["/api/v1/devices"]["post"]["responses"]
