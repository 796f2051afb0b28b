"""Schemathesis against the relay's own OpenAPI document: no server errors, conforming answers.

The real app runs under uvicorn (in a thread, on a free loopback port) with a
tenant, an office key, a work order and a policy in its database. Schemathesis
generates requests for every operation from ``/openapi.json`` and sends them
with the office key; every answer must be below 500 and match the documented
status codes, content types and schemas. Left out: ``/events`` (a stream that
never ends) and ``/webhooks`` (a registered URL would receive real deliveries).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.openapi import from_dict

from server import RelaySettings, create_app
from server.office import Office
from server.tenants import Role

from .conftest import TIMEOUT, fast_settings

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


async def office_key(db: Path) -> str:
    async with Office(db) as office:
        tenant = await office.tenants.create_tenant("Fuzz Service")
        issued = await office.tenants.create_credential(tenant.id, Role.OFFICE)
    return issued.token


@pytest.fixture(scope="module")
def live_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(base URL, office token)`` of the app served in a thread."""
    db = tmp_path_factory.mktemp("fuzz") / "relay.db"
    token = asyncio.run(office_key(db))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(create_app(fast_settings(db)), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as client:
            client.get("/healthz").raise_for_status()  # answered once startup is complete
            client.post(
                "/api/v1/workorders",
                json={"id": "1001", "number": "WO-1001", "planning": {"technician": "anna"}},
            ).raise_for_status()
            client.post("/api/v1/settings/policies", json={}).raise_for_status()
        yield url, token
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


# The document /openapi.json serves, built without starting the app (the served one is the same).
schema = from_dict(create_app(RelaySettings(db=Path("unused.db"))).openapi()).exclude(
    path_regex=r"/events$|/webhooks"
)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_every_generated_request_as_documented(
    case: schemathesis.Case, live_relay: tuple[str, str]
) -> None:
    url, token = live_relay
    case.call_and_validate(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
