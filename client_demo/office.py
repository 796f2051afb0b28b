"""The office: an HTTP client of the relay's office API (``/api/v1``), as a planner uses it.

Every call is one request with the office key; a refusal (4xx/5xx) raises
:class:`~client_demo.relay.DemoError` with the problem body, so a step of the
day that the API refuses stops the demo with the reason instead of going on
with wrong assumptions. Reads used by the verification return the JSON as
the API gives it: the checks in :mod:`client_demo.verify` read it field by field.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from .relay import DemoError

__all__ = ["Office"]

API = "/api/v1"


class Office:
    """The office API of the relay at ``base_url``, with ``office_key``. Use ``async with``."""

    def __init__(self, base_url: str, office_key: str, *, timeout: float = 30.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {office_key}"},
            timeout=timeout,
        )

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, path, **kwargs)
        if response.is_error:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._call(method, API + path, **kwargs)).json()

    # -- setting up ------------------------------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        """Who the office key is (its tenant)."""
        result: dict[str, Any] = await self._json("GET", "/me")
        return result

    async def publish_policy(self, policy: dict[str, Any]) -> int:
        """Publish ``policy`` as the company's current policy; return its version."""
        created = await self._json("POST", "/settings/policies", json=policy)
        return int(created["version"])

    async def issue_device(self, technician: str, label: str) -> str:
        """A device credential for ``technician``; returns its token (shown only here)."""
        issued = await self._json(
            "POST", "/devices", json={"technician": technician, "label": label}
        )
        return str(issued["token"])

    async def create_workorder(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a work order (``body`` as ``POST /workorders`` takes it); the new one."""
        result: dict[str, Any] = await self._json("POST", "/workorders", json=body)
        return result

    async def patch_workorder(self, ident: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Office edits of a work order, merged as a CRDT peer; the merged result."""
        result: dict[str, Any] = await self._json("PATCH", f"/workorders/{ident}", json=changes)
        return result

    # -- reading ---------------------------------------------------------------------------------

    async def workorder(self, ident: str) -> dict[str, Any]:
        """``GET /workorders/{id}``: merged state, problems, changed_after_sending."""
        result: dict[str, Any] = await self._json("GET", f"/workorders/{ident}")
        return result

    async def submissions(self, ident: str) -> list[dict[str, Any]]:
        """Every submission record of a work order, oldest first."""
        return list((await self._json("GET", f"/workorders/{ident}/submissions"))["items"])

    async def submission(self, ident: str, number: int) -> dict[str, Any]:
        """One submission record with its snapshot."""
        result: dict[str, Any] = await self._json(
            "GET", f"/workorders/{ident}/submissions/{number}"
        )
        return result

    async def submission_signature(self, ident: str, number: int) -> str | None:
        """The signature a submission carried, as SVG; None if the API has none."""
        path = f"{API}/workorders/{ident}/submissions/{number}/signature"
        response = await self._client.get(path)
        if response.status_code == 404:
            return None
        if response.is_error:
            raise DemoError(f"GET {path}: {response.status_code} {response.text}")
        return response.text

    async def attachment(self, sha256: str) -> bytes | None:
        """The bytes of a blob; None if the relay does not have it."""
        response = await self._client.get(f"{API}/attachments/{sha256}")
        if response.status_code == 404:
            return None
        if response.is_error:
            raise DemoError(f"GET attachment {sha256}: {response.status_code}")
        return response.content

    async def health(self) -> dict[str, Any] | None:
        """``GET /healthz`` as JSON, or None when the relay does not answer."""
        try:
            response = await self._client.get("/healthz", timeout=2.0)
            if response.is_error:
                return None
            result: dict[str, Any] = response.json()
        except (httpx.TransportError, ValueError):
            return None
        return result
