"""Fixtures for the relay deployment: the real app on a real SQLite file, real HTTP.

* ``running_app(settings)``: the app with its lifespan, and an httpx client
  over ``ASGITransport`` (no socket; responses are buffered, so not for SSE).
* ``served(app)``: any ASGI app served by uvicorn on a loopback socket bound to
  port 0; used for event streams, websockets and the webhook receiver. The
  socket listens before uvicorn starts, and uvicorn accepts only once the
  app's startup is complete, so one answered request (``GET /healthz``)
  means the app is running: nothing to poll.
* :class:`Receiver`: a webhook receiver that answers from a script of
  statuses and hands every request to the test through a queue.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from server import RelaySettings, create_app
from server.office import Office
from server.tenants import Role

TIMEOUT = 10.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def fast_settings(db: Path, **overrides: Any) -> RelaySettings:
    """Settings for tests: quick webhook retries, short heartbeats."""
    values: dict[str, Any] = {
        "db": db,
        "synchronous": "NORMAL",
        "webhook_retry_initial_seconds": 0.01,
        "webhook_retry_max_seconds": 0.05,
        "webhook_timeout_seconds": 5.0,
        "event_heartbeat_seconds": 5.0,
        "shutdown_grace_seconds": 1,
    }
    values.update(overrides)
    return RelaySettings(**values)


@asynccontextmanager
async def running_app(settings: RelaySettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
        ) as client,
    ):
        yield app, client


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1, a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        ws="websockets-sansio",
        log_level="warning",
        lifespan="auto",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            await client.get(url + "/healthz")
        yield url
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
        sock.close()


@dataclass
class Tenant:
    """A tenant with an office key, as a test sees it."""

    id: str
    office_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.office_token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_tenant(office: Office, name: str = "Acme Service") -> Tenant:
    tenant = await office.tenants.create_tenant(name)
    issued = await office.tenants.create_credential(tenant.id, Role.OFFICE, label="test")
    return Tenant(tenant.id, issued.token)


@pytest.fixture
def settings(tmp_path: Path) -> RelaySettings:
    return fast_settings(tmp_path / "relay.db")


@pytest.fixture
async def app_client(settings: RelaySettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
def app(app_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_client[0]


@pytest.fixture
def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


@pytest.fixture
def office(app: FastAPI) -> Office:
    result: Office = app.state.office
    return result


@pytest.fixture
async def tenant(office: Office) -> Tenant:
    return await make_tenant(office)


# -- webhook receiver ------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """An ASGI webhook receiver: answers ``statuses`` in turn (then 204), records each request.

    A status of 0 means: do not answer until ``release`` is set (a hung receiver).
    """

    statuses: list[int] = field(default_factory=list)
    requests: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    count: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":  # the readiness probe
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = self.statuses[self.count] if self.count < len(self.statuses) else 204
        self.count += 1
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if status == 0:
            self.requests.put_nowait(Received(headers, body, status))
            await self.release.wait()
            status = 504
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        self.requests.put_nowait(Received(headers, body, status))

    async def next(self) -> Received:
        return await asyncio.wait_for(self.requests.get(), TIMEOUT)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    async with served(hook) as url:
        yield hook, url + "/hook"
        hook.release.set()


async def wait_for(predicate: Callable[[], Awaitable[bool]], event: asyncio.Event) -> None:
    """Wait until ``predicate()`` holds, re-checking each time ``event`` fires (under TIMEOUT)."""
    async with asyncio.timeout(TIMEOUT):
        while not await predicate():
            await event.wait()
            event.clear()
