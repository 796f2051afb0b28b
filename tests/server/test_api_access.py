"""The access matrix of the work-order API: each role, each endpoint, own and other technician,
own and other tenant, over the real app, with exact statuses.

Tenant A has an office key, a viewer key, and devices for anna and bram; work
order 1001 is anna's (sent, with a photo and a signature), 1002 is bram's.
Tenant B has an office key and a device for its own anna, and work order 2001.
Every case asks every principal; the office asks last, so that its writes never
change what the others are refused. Every refusal must be problem+json and
logged on ``crdtsync.audit``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crdtsync.workorder import AttachmentKind

from .conftest import Tenant, bearer, make_tenant
from .helpers import STROKES, create, device_link, issue_device

PHOTO = b"photo of the boiler"
SHA = hashlib.sha256(PHOTO).hexdigest()
PRINCIPALS = ("viewer", "anna", "bram", "other_office", "other_anna", "office")


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expected: dict[str, int]
    json: dict[str, Any] | None = None
    content: bytes | None = None


def matrix(
    office: int,
    viewer: int,
    anna: int,
    bram: int,
    other_office: int,
    other_anna: int,
) -> dict[str, int]:
    return {
        "office": office,
        "viewer": viewer,
        "anna": anna,
        "bram": bram,
        "other_office": other_office,
        "other_anna": other_anna,
    }


READ_ANY = matrix(200, 200, 200, 200, 200, 200)
OWN_WORKORDER = matrix(200, 200, 200, 404, 404, 404)  # 1001 is anna's
OTHERS_WORKORDER = matrix(200, 200, 404, 200, 404, 404)  # 1002 is bram's
OFFICE_READ = matrix(200, 200, 403, 403, 404, 403)
OFFICE_WRITE = matrix(200, 403, 403, 403, 404, 403)
WO = "/api/v1/workorders"

CASES: dict[str, Case] = {
    "list": Case("GET", WO, READ_ANY),
    "create": Case("POST", WO, matrix(201, 403, 403, 403, 201, 403), json={"number": "N-1"}),
    "get own": Case("GET", f"{WO}/1001", OWN_WORKORDER),
    "get other technician's": Case("GET", f"{WO}/1002", OTHERS_WORKORDER),
    "patch": Case("PATCH", f"{WO}/1001", OFFICE_WRITE, json={"customer": {"city": "Gouda"}}),
    "reopen": Case("POST", f"{WO}/1001/reopen", OFFICE_WRITE),
    "processed": Case("POST", f"{WO}/1001/processed", OFFICE_WRITE),
    "get memo": Case("GET", f"{WO}/1001/memo", OFFICE_READ),
    "put memo": Case("PUT", f"{WO}/1001/memo", OFFICE_WRITE, json={"memo": "m"}),
    "submissions": Case("GET", f"{WO}/1001/submissions", OFFICE_READ),
    "submission": Case("GET", f"{WO}/1001/submissions/1", OFFICE_READ),
    "submission signature": Case("GET", f"{WO}/1001/submissions/1/signature", OFFICE_READ),
    "signature": Case("GET", f"{WO}/1001/signature", OFFICE_READ),
    "get attachment": Case("GET", f"/api/v1/attachments/{SHA}", OWN_WORKORDER),
    "put attachment": Case(
        "PUT", f"/api/v1/attachments/{SHA}", matrix(200, 403, 403, 403, 201, 403), content=PHOTO
    ),
    "get settings": Case("GET", "/api/v1/settings", READ_ANY),
    "publish policy": Case(
        "POST", "/api/v1/settings/policies", matrix(201, 403, 403, 403, 201, 403), json={}
    ),
    "current policy": Case(
        "PUT", "/api/v1/settings/current", matrix(200, 403, 403, 403, 409, 403), json={"version": 1}
    ),
    "put override": Case(
        "PUT",
        "/api/v1/settings/overrides/anna",
        matrix(200, 403, 403, 403, 409, 403),
        json={"version": 1},
    ),
    "delete override": Case(
        "DELETE", "/api/v1/settings/overrides/anna", matrix(204, 403, 403, 403, 409, 403)
    ),
}


async def tokens(app: FastAPI, client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    """Set up both tenants (see the module docstring); the headers of every principal."""
    office = app.state.office
    a = await make_tenant(office, "A")
    b = await make_tenant(office, "B")
    viewer = await office.tenants.create_credential(a.id, "viewer")
    await client.put(f"/api/v1/attachments/{SHA}", content=PHOTO, headers=a.headers)
    await client.post("/api/v1/settings/policies", json={}, headers=a.headers)
    await create(client, a, "1001", planning={"technician": "anna"})
    await create(client, a, "1002", planning={"technician": "bram"})
    await create(client, b, "2001", planning={"technician": "anna"})
    await send_with_photo(app, a)
    return {
        "office": a.headers,
        "viewer": bearer(viewer.token),
        "anna": bearer(await issue_device(client, a, "anna")),
        "bram": bearer(await issue_device(client, a, "bram")),
        "other_office": b.headers,
        "other_anna": bearer(await issue_device(client, b, "anna")),
    }


async def send_with_photo(app: FastAPI, tenant: Tenant) -> None:
    async with device_link(app, tenant.id, "anna") as device:
        await device.open("wo/1001")
        await device.edit(
            "wo/1001",
            lambda e: e.attach(
                SHA, kind=AttachmentKind.PHOTO, name="boiler.jpg", mime="image/jpeg", size=9
            ),
        )
        await device.edit("wo/1001", lambda e: e.sign(STROKES, signer_name="J. de Vries"))
        answer = await device.submit("wo/1001", "send-1")
    assert answer["status"] == "accepted", answer
    await app.state.views.flush()


@pytest.mark.parametrize("name", list(CASES))
async def test_access_matrix(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    case = CASES[name]
    headers = await tokens(app, client)
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="crdtsync.audit")
    seen: dict[str, int] = {}
    refusals = 0
    for who in PRINCIPALS:
        response = await client.request(
            case.method, case.path, json=case.json, content=case.content, headers=headers[who]
        )
        seen[who] = response.status_code
        if response.status_code >= 400:
            refusals += 1
            assert response.headers["content-type"] == "application/problem+json"
    assert seen == case.expected
    audited = [r for r in caplog.records if r.name == "crdtsync.audit"]
    assert len(audited) == refusals


async def test_lists_show_only_what_each_principal_may_see(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await tokens(app, client)
    expected = {
        "office": ["1001", "1002"],
        "viewer": ["1001", "1002"],
        "anna": ["1001"],
        "bram": ["1002"],
        "other_office": ["2001"],
        "other_anna": ["2001"],
    }
    for who, ids in expected.items():
        page = (await client.get(WO, headers=headers[who])).json()
        assert [item["id"] for item in page["items"]] == ids, who
    moved = await client.patch(
        f"{WO}/1002", json={"planning": {"technician": "anna"}}, headers=headers["office"]
    )
    assert moved.status_code == 200
    page = (await client.get(WO, headers=headers["anna"])).json()
    assert [item["id"] for item in page["items"]] == ["1001", "1002"]
    assert (await client.get(f"{WO}/1002", headers=headers["bram"])).status_code == 404


async def test_no_credential_and_bad_credentials_are_401(client: httpx.AsyncClient) -> None:
    for case in CASES.values():
        response = await client.request(case.method, case.path, json=case.json)
        assert response.status_code == 401, case
        response = await client.request(
            case.method, case.path, json=case.json, headers=bearer("cs_0123456789abcdef_x")
        )
        assert response.status_code == 401, case
