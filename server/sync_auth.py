"""Who is on a sync connection: the principal behind the token a websocket presents.

* A credential token (``cs_<id>_<secret>``, issued per device or office key)
  gives that credential's tenant, role and technician. An unknown, revoked or
  expired one is refused, whatever else is configured.
* The shared ``--token`` (when configured) and, without one, any connection
  (the relay runs open) act as an office without a tenant: they reach only
  documents outside every tenant, never a tenant's data.

A connection lives no longer than its credential: it is cut (4401) when the
credential expires or is revoked (see :func:`serve_until_expiry`).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from datetime import UTC, datetime

from crdtsync import Principal, Relay

from .tenants import TOKEN_PREFIX, AuthenticationError, Credential, Tenants

__all__ = ["SyncAuthenticator", "serve_until_expiry"]


class SyncAuthenticator:
    """Turns a presented token into a principal, or None when it must be refused."""

    def __init__(self, tenants: Tenants, shared_token: str | None) -> None:
        self.tenants = tenants
        self.shared_token = shared_token

    async def principal(self, token: str | None) -> tuple[Principal, datetime | None] | None:
        """The principal and when its credential expires; None to refuse the connection."""
        if token is not None and token.startswith(TOKEN_PREFIX):
            try:
                found = await self.tenants.authenticate(token)
                credential: Credential = await self.tenants.get_credential(
                    found.tenant_id, found.credential_id
                )
            except AuthenticationError:
                return None
            principal = Principal(
                role=found.role.value,
                tenant=found.tenant_id,
                subject=found.technician or "",
                credential=found.credential_id,
            )
            return principal, credential.expires_at
        if self.shared_token is None:
            return Principal(role="office"), None
        if token is not None and hmac.compare_digest(token.encode(), self.shared_token.encode()):
            return Principal(role="office", credential="shared-token"), None
        return None


async def serve_until_expiry(
    relay: Relay, serving: Awaitable[None], principal: Principal, expires_at: datetime | None
) -> None:
    """Await ``serving``; if the credential expires first, cut the connection (4401)."""
    if expires_at is None:
        await serving
        return

    async def expire() -> None:
        await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
        relay.disconnect(lambda who: who.credential == principal.credential, "credential expired")

    async with asyncio.TaskGroup() as tasks:
        expiry = tasks.create_task(expire())
        await serving
        expiry.cancel()
