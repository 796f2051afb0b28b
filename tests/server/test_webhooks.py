"""Webhooks: registration API, signatures, retries with backoff, delivery across restarts."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import httpx
import pytest

from server.dispatcher import AttemptOutcome, RetryPolicy
from server.office import Office
from server.tenants import Role
from server.webhooks import Webhook, sign, verify_signature

from .conftest import (
    TIMEOUT,
    Received,
    Receiver,
    Tenant,
    bearer,
    fast_settings,
    make_tenant,
    running_app,
)

SECRET = "a-webhook-secret-of-some-length"


def assert_signed(request: Received, secret: str = SECRET) -> None:
    headers = request.headers
    assert verify_signature(
        secret, headers["x-crdtsync-timestamp"], request.body, headers["x-crdtsync-signature"]
    )


async def add_webhook(
    client: httpx.AsyncClient, tenant: Tenant, url: str, **body: object
) -> dict[str, object]:
    response = await client.post(
        "/api/v1/webhooks", json={"url": url, "secret": SECRET, **body}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


# -- signatures and policy (pure) -----------------------------------------------------------------


def test_signatures_verify_and_refuse_tampering() -> None:
    body = b'{"seq":1}'
    now = 1_700_000_000
    timestamp = str(now)
    header = sign(SECRET, timestamp, body)
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert verify_signature(SECRET, timestamp, body, header, now=now + 10)
    assert not verify_signature("another-secret-entirely", timestamp, body, header, now=now)
    assert not verify_signature(SECRET, timestamp, b'{"seq":2}', header, now=now)
    assert not verify_signature(SECRET, str(now + 1), body, header, now=now)
    assert not verify_signature(SECRET, timestamp, body, header, now=now + 301)
    assert verify_signature(SECRET, timestamp, body, header, tolerance=None, now=now + 10**6)
    assert not verify_signature(SECRET, "yesterday", body, header)


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(initial=1.0, maximum=60.0, jitter=0.5)
    rng = random.Random(7)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (500, 60.0)]:
        for _ in range(20):
            assert base * 0.5 <= policy.delay(failures, rng) <= base
    assert len({policy.delay(3, rng) for _ in range(20)}) > 1


def test_kind_filters() -> None:
    def hook(*kinds: str) -> Webhook:
        return Webhook("w", "t", "http://x", kinds, created_at=None)  # type: ignore[arg-type]

    assert hook().wants("document.updated")
    assert hook("document.updated").wants("document.updated")
    assert not hook("document.updated").wants("document.created")
    assert hook("workorder.*").wants("workorder.submitted")
    assert not hook("workorder.*").wants("workorders.x")


# -- the API ---------------------------------------------------------------------------------------


async def test_register_list_and_delete(
    client: httpx.AsyncClient, office: Office, tenant: Tenant
) -> None:
    created = await add_webhook(client, tenant, "https://example.invalid/hook", kinds=["a.*"])
    assert created["secret"] == SECRET
    generated = (
        await client.post(
            "/api/v1/webhooks", json={"url": "http://example.invalid/2"}, headers=tenant.headers
        )
    ).json()
    assert str(generated["secret"]).startswith("whsec_")
    listed = (await client.get("/api/v1/webhooks", headers=tenant.headers)).json()["items"]
    assert [w["id"] for w in listed] == [created["id"], generated["id"]]
    assert all("secret" not in w for w in listed)
    assert listed[0]["backlog"] == {"pending": 0, "failing": 0, "oldest": None}
    other = await make_tenant(office, "Other")
    response = await client.get(f"/api/v1/webhooks/{created['id']}", headers=other.headers)
    assert response.status_code == 404
    response = await client.delete(f"/api/v1/webhooks/{created['id']}", headers=other.headers)
    assert response.status_code == 404
    response = await client.delete(f"/api/v1/webhooks/{created['id']}", headers=tenant.headers)
    assert response.status_code == 204
    response = await client.get(f"/api/v1/webhooks/{created['id']}", headers=tenant.headers)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.invalid/x"},
        {"url": "not a url"},
        {"url": "http://example.invalid/x", "secret": "short"},
        {"url": "http://example.invalid/x", "kinds": ["Bad Kind"]},
    ],
)
async def test_invalid_webhooks_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object]
) -> None:
    response = await client.post("/api/v1/webhooks", json=body, headers=tenant.headers)
    assert response.status_code == 422


async def test_only_office_credentials_manage_webhooks(
    client: httpx.AsyncClient, office: Office, tenant: Tenant
) -> None:
    viewer = await office.tenants.create_credential(tenant.id, Role.VIEWER)
    response = await client.get("/api/v1/webhooks", headers=bearer(viewer.token))
    assert response.status_code == 403
    response = await client.post(
        "/api/v1/webhooks", json={"url": "http://example.invalid"}, headers=bearer(viewer.token)
    )
    assert response.status_code == 403


# -- delivery --------------------------------------------------------------------------------------


async def test_a_change_is_delivered_signed_to_matching_webhooks(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    attempts: asyncio.Queue[AttemptOutcome] = asyncio.Queue()
    async with running_app(fast_settings(tmp_path / "relay.db")) as (app, client):
        office: Office = app.state.office
        office.dispatcher.on_attempt.append(attempts.put_nowait)
        tenant = await make_tenant(office)
        other = await make_tenant(office, "Other")
        created = await add_webhook(client, tenant, url, kinds=["document.*"])
        await add_webhook(client, other, url)
        await office.changes.record(tenant.id, "wo/1", "workorder.ignored")
        seq = await office.changes.record(tenant.id, "wo/1", "document.updated", {"n": 1})
        request = await hook.next()
        assert_signed(request)
        payload = json.loads(request.body)
        assert payload["seq"] == seq
        assert payload["tenant"] == tenant.id
        assert (payload["document"], payload["kind"], payload["data"]) == (
            "wo/1",
            "document.updated",
            {"n": 1},
        )
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-crdtsync-delivery"]
        assert abs(int(request.headers["x-crdtsync-timestamp"]) - time.time()) < 3600
        assert (await asyncio.wait_for(attempts.get(), TIMEOUT)).delivered
        assert hook.requests.empty()
        backlog = await office.webhooks.backlog(tenant.id, webhook_id=str(created["id"]))
        assert backlog.pending == 0


async def test_failures_are_retried_and_delivery_survives_a_restart(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    """The receiver fails three times; the relay restarts in between; the same delivery arrives."""
    hook, url = receiver
    hook.statuses = [500, 503, 404]
    settings = fast_settings(tmp_path / "relay.db")
    attempts: asyncio.Queue[AttemptOutcome] = asyncio.Queue()
    async with running_app(settings) as (app, client):
        office: Office = app.state.office
        office.dispatcher.on_attempt.append(attempts.put_nowait)
        tenant = await make_tenant(office)
        await add_webhook(client, tenant, url)
        await office.changes.record(tenant.id, "wo/1", "document.updated", {"n": 1})
        first = await asyncio.wait_for(attempts.get(), TIMEOUT)
        assert (first.attempt, first.delivered, first.error) == (1, False, "HTTP 500")
    # The app is stopped; a new one on the same file finishes the job.
    async with running_app(settings) as (app, client):
        office = app.state.office
        office.dispatcher.on_attempt.append(attempts.put_nowait)
        while not (outcome := await asyncio.wait_for(attempts.get(), TIMEOUT)).delivered:
            pass
        # An attempt cut short by the first app's shutdown may have reached the
        # receiver without its outcome being stored: it is then sent again.
        assert outcome.attempt in (3, 4)
        assert (await office.webhooks.backlog()).pending == 0
        listed = (await client.get("/api/v1/webhooks", headers=tenant.headers)).json()["items"]
        assert listed[0]["backlog"]["pending"] == 0
    requests = [hook.requests.get_nowait() for _ in range(hook.requests.qsize())]
    assert [r.status for r in requests] == [500, 503, 404, 204]
    assert len({r.headers["x-crdtsync-delivery"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    for request in requests:
        assert_signed(request)


async def test_failing_deliveries_are_counted_and_still_retried(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    hook.statuses = [500] * 4
    settings = fast_settings(tmp_path / "relay.db", webhook_failing_after=2)
    attempts: asyncio.Queue[AttemptOutcome] = asyncio.Queue()
    async with running_app(settings) as (app, client):
        office: Office = app.state.office
        office.dispatcher.on_attempt.append(attempts.put_nowait)
        tenant = await make_tenant(office)
        await add_webhook(client, tenant, url)
        await office.changes.record(tenant.id, "wo/1", "document.updated")
        for expected in (1, 2):
            assert (await asyncio.wait_for(attempts.get(), TIMEOUT)).attempt == expected
        backlog = await office.webhooks.backlog(tenant.id)
        # The third attempt may already be under way; the delivery is pending and failing.
        assert backlog.pending == 1
        assert backlog.failing == 1
        metrics = (await client.get("/metrics")).text
        assert 'crdtsync_webhook_backlog{state="failing"} 1.0' in metrics
        while not (await asyncio.wait_for(attempts.get(), TIMEOUT)).delivered:
            pass
        assert (await office.webhooks.backlog()).failing == 0
        metrics = (await client.get("/metrics")).text
        assert 'crdtsync_webhook_attempts_total{outcome="failed"} 4.0' in metrics
        assert 'crdtsync_webhook_attempts_total{outcome="delivered"} 1.0' in metrics


async def test_unreachable_receivers_are_retried(tmp_path: Path) -> None:
    """A connection error is a failed attempt, not a lost delivery."""
    settings = fast_settings(tmp_path / "relay.db")
    attempts: asyncio.Queue[AttemptOutcome] = asyncio.Queue()
    async with running_app(settings) as (app, client):
        office: Office = app.state.office
        office.dispatcher.on_attempt.append(attempts.put_nowait)
        tenant = await make_tenant(office)
        # Port 9 on loopback: nothing listens there (discard), so the connection is refused.
        await add_webhook(client, tenant, "http://127.0.0.1:9/hook")
        await office.changes.record(tenant.id, "wo/1", "document.updated")
        for expected in (1, 2):
            outcome = await asyncio.wait_for(attempts.get(), TIMEOUT)
            assert outcome.attempt == expected
            assert not outcome.delivered
            assert outcome.error
        assert (await office.webhooks.backlog()).pending == 1


async def test_a_receiver_that_does_not_answer_times_out_and_is_retried(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    hook.statuses = [0]
    settings = fast_settings(tmp_path / "relay.db", webhook_timeout_seconds=0.2)
    attempts: asyncio.Queue[AttemptOutcome] = asyncio.Queue()
    async with running_app(settings) as (app, client):
        office: Office = app.state.office
        office.dispatcher.on_attempt.append(attempts.put_nowait)
        tenant = await make_tenant(office)
        await add_webhook(client, tenant, url)
        await office.changes.record(tenant.id, "wo/1", "document.updated")
        first = await asyncio.wait_for(attempts.get(), TIMEOUT)
        assert (first.delivered, first.error) == (False, "timeout")
        second = await asyncio.wait_for(attempts.get(), TIMEOUT)
        assert second.delivered
    hung, answered = await hook.next(), await hook.next()
    assert hung.headers["x-crdtsync-delivery"] == answered.headers["x-crdtsync-delivery"]
