"""The office side of end-to-end tests: a tenant from the command line, then its HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from crdtsync import Backoff, Connector, websocket_connector

from ..conftest import ROOT, RelayProcess

__all__ = ["FAST", "Office", "create_tenant"]

#: Devices in end-to-end tests reconnect quickly.
FAST = Backoff(initial=0.05, maximum=0.5)


def create_tenant(db: Path, name: str) -> dict[str, Any]:
    """``crdtsync-relay tenant create NAME``: the tenant id and its office key."""
    done = subprocess.run(
        [sys.executable, "-m", "server", "tenant", "create", name, "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class Office:
    """An office integration: its key and the relay's HTTP API. Use with ``async with``."""

    def __init__(self, relay: RelayProcess, name: str = "Acme Installaties") -> None:
        self.relay = relay
        tenant = create_tenant(relay.db, name)
        self.tenant_id: str = tenant["tenant_id"]
        self.key: str = tenant["office_key"]
        self.http = httpx.AsyncClient(
            base_url=f"{relay.http_url}/api/v1",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    async def publish_policy(self, **required: Any) -> int:
        created = await self.call("POST", "/settings/policies", json={"required": required})
        return int(created["version"])

    async def create(self, ident: str, **fields: Any) -> dict[str, Any]:
        body = {"id": ident, "number": f"WO-{ident}", **fields}
        result: dict[str, Any] = await self.call("POST", "/workorders", json=body)
        return result

    async def workorder(self, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/workorders/{ident}")
        return result

    async def submissions(self, ident: str) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self.call("GET", f"/workorders/{ident}/submissions")
        items: list[dict[str, Any]] = result["items"]
        return items

    async def device_token(self, technician: str) -> str:
        issued = await self.call("POST", "/devices", json={"technician": technician})
        return str(issued["token"])

    async def connector(self, technician: str) -> Connector:
        """A connector for a new device credential of ``technician``."""
        return websocket_connector(self.relay.sync_url, token=await self.device_token(technician))
