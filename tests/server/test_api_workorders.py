"""The work-order API over the real app: create, list, read, edit, life cycle, records."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crdtsync.workorder import AttachmentKind, Planning, planning_document

from .conftest import Tenant, bearer
from .helpers import create, device_link, issue_device, sent_workorder
from .test_api_credentials import assert_problem

WO = "/api/v1/workorders"


async def planning_of(app: FastAPI, tenant: Tenant, technician: str) -> list[str]:
    doc = await app.state.relay.read(planning_document(technician), tenant=tenant.id)
    planning, _ = Planning.from_doc(doc)
    return sorted(planning.active_ids())


async def test_create_builds_the_skeleton_memo_and_assignment(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await create(
        client,
        tenant,
        "1001",
        customer={"name": "Bakkerij De Vries", "city": "Utrecht"},
        planning={"technician": "anna", "planned_date": "2026-12-01"},
        tasks=["Check boiler", "Replace valve"],
        description="Leaking valve",
        memo="Customer pays cash",
    )
    assert body["status"] == "planned"
    assert body["technician"] == "anna"
    assert body["changed_after_sending"] is False
    workorder = body["workorder"]
    assert workorder["customer"]["name"] == "Bakkerij De Vries"
    assert sorted(t["title"] for t in workorder["tasks"].values()) == [
        "Check boiler",
        "Replace valve",
    ]
    assert body["problems"] == []
    assert await planning_of(app, tenant, "anna") == ["1001"]
    memo = await client.get(f"{WO}/1001/memo", headers=tenant.headers)
    assert memo.json() == {"id": "1001", "memo": "Customer pays cash"}
    again = await client.post(WO, json={"id": "1001", "number": "X"}, headers=tenant.headers)
    assert_problem(again, 409, "workorder_exists")
    generated = await client.post(WO, json={"number": "WO-new"}, headers=tenant.headers)
    assert generated.status_code == 201
    assert generated.headers["location"] == f"{WO}/{generated.json()['id']}"
    assert generated.json()["status"] == "registered"


async def test_invalid_values_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(WO, json={"id": "1", "number": ""}, headers=tenant.headers)
    assert_problem(response, 422, "validation_failed")
    response = await client.post(
        WO, json={"id": "1", "number": "n", "customer": {"nmae": "x"}}, headers=tenant.headers
    )
    assert_problem(response, 422, "validation_failed")
    await create(client, tenant, "1")
    response = await client.patch(
        f"{WO}/1",
        json={
            "planning": {
                "planned_start": "2026-02-01T10:00:00Z",
                "planned_end": "2026-02-01T09:00:00Z",
            }
        },
        headers=tenant.headers,
    )
    body = assert_problem(response, 422, "invalid_value")
    assert body["errors"][0]["loc"] == ["body", "planning", "planned_end"]
    response = await client.patch(
        f"{WO}/1", json={"customer": {"email": "not an address"}}, headers=tenant.headers
    )
    assert_problem(response, 422, "invalid_value")
    response = await client.patch(
        f"{WO}/1",
        content=b'{"short_description": "\\ud800"}',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation_failed")
    response = await client.patch(f"{WO}/1", json={"number": None}, headers=tenant.headers)
    assert_problem(response, 422, "invalid_value")
    unchanged = (await client.get(f"{WO}/1", headers=tenant.headers)).json()
    assert unchanged["workorder"]["planning"]["planned_start"] is None


async def test_list_filters_and_pages_with_a_cursor(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for i in range(7):
        planning = {"technician": "anna" if i % 2 else "bram", "planned_date": f"2026-12-0{i + 1}"}
        await create(client, tenant, f"wo-{i}", planning=planning)
    await create(client, tenant, "wo-unplanned")

    async def ids(**params: Any) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(WO, params=query, headers=tenant.headers)).json()
            found += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    assert await ids(limit=3) == [f"wo-{i}" for i in range(7)] + ["wo-unplanned"]
    assert await ids(technician="anna", limit=2) == ["wo-1", "wo-3", "wo-5"]
    assert await ids(planned_from="2026-12-02", planned_to="2026-12-04") == [
        "wo-1",
        "wo-2",
        "wo-3",
    ]
    assert await ids(status="registered") == ["wo-unplanned"]
    assert await ids(status=["registered", "planned"], technician="bram") == [
        "wo-0",
        "wo-2",
        "wo-4",
        "wo-6",
    ]
    first = (await client.get(f"{WO}/wo-6", headers=tenant.headers)).json()
    assert await ids(changed_since=first["changed_at"]) == ["wo-6", "wo-unplanned"]
    bad = await client.get(WO, params={"cursor": "%%%"}, headers=tenant.headers)
    assert_problem(bad, 422, "invalid_cursor")


async def test_patch_moves_the_assignment_between_plannings(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, "1001", planning={"technician": "anna"})
    response = await client.patch(
        f"{WO}/1001",
        json={
            "planning": {"technician": "bram", "planned_date": "2026-12-03"},
            "customer": {"name": "Jansen"},
            "short_description": "Boiler",
            "description": "Check the pressure",
            "external_ref": "ERP-7",
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["technician"] == "bram"
    assert body["status"] == "planned"
    assert body["workorder"]["description"] == "Check the pressure"
    assert body["workorder"]["meta"]["external_ref"] == "ERP-7"
    assert await planning_of(app, tenant, "anna") == []
    assert await planning_of(app, tenant, "bram") == ["1001"]
    cleared = await client.patch(
        f"{WO}/1001", json={"planning": {"technician": None}}, headers=tenant.headers
    )
    assert cleared.json()["technician"] is None
    assert await planning_of(app, tenant, "bram") == []
    kinds = [
        c["kind"]
        for c in (await client.get("/api/v1/changes", headers=tenant.headers)).json()["items"]
    ]
    assert kinds == [
        "workorder.created",
        "workorder.updated",
        "workorder.assigned",
        "workorder.updated",
        "workorder.assigned",
    ]
    missing = await client.patch(f"{WO}/nope", json={}, headers=tenant.headers)
    assert_problem(missing, 404, "not_found")


async def test_a_crew_puts_the_work_order_on_every_members_planning(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await create(
        client, tenant, "1001", planning={"technician": "anna", "crew": ["bram", "chris"]}
    )
    assert body["workorder"]["planning"]["crew"] == ["bram", "chris"]
    for technician in ("anna", "bram", "chris"):
        assert await planning_of(app, tenant, technician) == ["1001"]
    bram = await issue_device(client, tenant, "bram")
    seen = await client.get(f"{WO}/1001", headers=bearer(bram))
    assert seen.status_code == 200, seen.text

    response = await client.patch(
        f"{WO}/1001", json={"planning": {"crew": ["chris"]}}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert await planning_of(app, tenant, "bram") == []
    assert await planning_of(app, tenant, "chris") == ["1001"]
    assert (await client.get(f"{WO}/1001", headers=bearer(bram))).status_code == 404
    moved = await client.patch(
        f"{WO}/1001",
        json={"planning": {"technician": "dirk", "crew": None}},
        headers=tenant.headers,
    )
    assert moved.json()["workorder"]["planning"]["crew"] is None
    for technician, expected in (("anna", []), ("chris", []), ("dirk", ["1001"])):
        assert await planning_of(app, tenant, technician) == expected
    twice = await client.patch(
        f"{WO}/1001", json={"planning": {"crew": ["bram", "bram"]}}, headers=tenant.headers
    )
    assert_problem(twice, 422, "invalid_value")
    assert await planning_of(app, tenant, "bram") == []


async def test_sent_work_orders_show_records_signature_and_later_changes(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    answer = await sent_workorder(app, client, tenant, "1001")
    body = (await client.get(f"{WO}/1001", headers=tenant.headers)).json()
    assert body["status"] == "sent"
    assert body["sent_submission_id"] == answer["record_id"]
    assert body["changed_after_sending"] is False
    records = (await client.get(f"{WO}/1001/submissions", headers=tenant.headers)).json()
    [record] = records["items"]
    assert record["accepted"] is True
    assert record["content_hash"] == answer["content_hash"]
    assert record["submission_id"] == answer["record_id"]
    assert record["result"]["status"] == "accepted"
    detail = await client.get(f"{WO}/1001/submissions/{record['id']}", headers=tenant.headers)
    assert detail.json()["snapshot"]["notes"] == "Boiler checked."
    svg = await client.get(
        f"{WO}/1001/submissions/{record['id']}/signature", headers=tenant.headers
    )
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "J. de Vries" in svg.text
    assert (await client.get(f"{WO}/1001/signature", headers=tenant.headers)).text == svg.text
    assert_problem(
        await client.get(f"{WO}/1001/submissions/99", headers=tenant.headers), 404, "not_found"
    )

    await client.patch(f"{WO}/1001", json={"customer": {"phone": "06-1"}}, headers=tenant.headers)
    body = (await client.get(f"{WO}/1001", headers=tenant.headers)).json()
    assert body["changed_after_sending"] is True
    assert body["changed_paths"] == ["customer.phone"]
    kinds = [
        c["kind"]
        for c in (await client.get("/api/v1/changes", headers=tenant.headers)).json()["items"]
    ]
    assert "workorder.sent" in kinds
    assert kinds[-1] == "workorder.changed_after_sending"

    processed = await client.post(f"{WO}/1001/processed", headers=tenant.headers)
    assert processed.json()["status"] == "processed"
    assert_problem(
        await client.post(f"{WO}/1001/processed", headers=tenant.headers), 409, "not_sent"
    )
    reopened = await client.post(f"{WO}/1001/reopen", headers=tenant.headers)
    assert reopened.json()["status"] == "in_progress"
    assert reopened.json()["sent_submission_id"] is None
    assert_problem(await client.post(f"{WO}/1001/reopen", headers=tenant.headers), 409, "not_sent")


async def test_memo_is_the_offices_own(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create(client, tenant, "1001", memo="first")
    response = await client.put(
        f"{WO}/1001/memo", json={"memo": "first, then second"}, headers=tenant.headers
    )
    assert response.json() == {"id": "1001", "memo": "first, then second"}
    missing = await client.put(f"{WO}/nope/memo", json={"memo": "x"}, headers=tenant.headers)
    assert_problem(missing, 404, "not_found")


async def test_attachments_by_sha256(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    photo = b"\x89PNG not really"
    sha = hashlib.sha256(photo).hexdigest()
    url = f"/api/v1/attachments/{sha}"
    assert_problem(await client.get(url, headers=tenant.headers), 404, "not_found")
    wrong = await client.put(url, content=b"other bytes", headers=tenant.headers)
    assert_problem(wrong, 422, "sha256_mismatch")
    stored = await client.put(url, content=photo, headers=tenant.headers)
    assert stored.status_code == 201
    assert stored.json() == {"sha256": sha, "size": len(photo), "created": True}
    assert (await client.put(url, content=photo, headers=tenant.headers)).status_code == 200
    plain = await client.get(url, headers=tenant.headers)
    assert plain.content == photo
    assert plain.headers["content-type"] == "application/octet-stream"

    await create(client, tenant, "1001", planning={"technician": "anna"})
    async with device_link(app, tenant.id, "anna") as device:
        await device.open("wo/1001")
        await device.edit(
            "wo/1001",
            lambda e: e.attach(
                sha, kind=AttachmentKind.PHOTO, name="boiler.png", mime="image/png", size=len(photo)
            ),
        )
    await app.state.views.flush()
    served = await client.get(url, headers=tenant.headers)
    assert served.headers["content-type"] == "image/png"
    assert served.headers["etag"] == f'"{sha}"'
    anna = bearer(await issue_device(client, tenant, "anna"))
    bram = bearer(await issue_device(client, tenant, "bram"))
    assert (await client.get(url, headers=anna)).content == photo
    assert_problem(await client.get(url, headers=bram), 404, "not_found")


async def test_settings_are_versioned(client: httpx.AsyncClient, tenant: Tenant) -> None:
    empty = (await client.get("/api/v1/settings", headers=tenant.headers)).json()
    assert empty["published"] is False
    assert empty["effective"]["version"] == 0
    override = await client.put(
        "/api/v1/settings/overrides/anna", json={"version": 1}, headers=tenant.headers
    )
    assert_problem(override, 409, "no_settings")
    first = await client.post(
        "/api/v1/settings/policies", json={"required": {"hours": True}}, headers=tenant.headers
    )
    assert first.status_code == 201
    assert first.json() == {"version": 1, "current": 1}
    second = await client.post(
        "/api/v1/settings/policies",
        params={"make_current": "false"},
        json={"required": {"signature": True}, "version": 77},
        headers=tenant.headers,
    )
    assert second.json() == {"version": 2, "current": 1}
    response = await client.put(
        "/api/v1/settings/overrides/anna", json={"version": 2}, headers=tenant.headers
    )
    assert response.json()["overrides"] == {"anna": 2}
    anna = bearer(await issue_device(client, tenant, "anna"))
    seen = (await client.get("/api/v1/settings", headers=anna)).json()
    assert seen["effective"]["version"] == 2
    assert seen["effective"]["required"]["signature"] is True
    unknown = await client.put(
        "/api/v1/settings/current", json={"version": 9}, headers=tenant.headers
    )
    assert_problem(unknown, 422, "invalid_value")
    current = await client.put(
        "/api/v1/settings/current", json={"version": 2}, headers=tenant.headers
    )
    assert current.json()["current"] == 2
    gone = await client.delete("/api/v1/settings/overrides/anna", headers=tenant.headers)
    assert gone.status_code == 204
    final = (await client.get("/api/v1/settings", headers=tenant.headers)).json()
    assert final["overrides"] == {}
    assert sorted(final["versions"]) == ["1", "2"]


@pytest.mark.parametrize("path", ["/api/v1/workorders/a%20b", "/api/v1/workorders/x/memo"])
async def test_unknown_or_malformed_ids_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    response = await client.get(path, headers=tenant.headers)
    assert response.status_code in (404, 422)
    assert response.headers["content-type"] == "application/problem+json"
