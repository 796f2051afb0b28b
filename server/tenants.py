"""Tenants and their credentials: who may talk to the relay, in which role.

A tenant is one company. A credential belongs to one tenant and has a role:

* ``office``: full access to the tenant's office API;
* ``viewer``: the office API, read-only;
* ``device``: one technician's device (``technician`` is set for devices only).

Tokens look like ``cs_<credential id>_<secret>``. The credential id (hex) finds
the row; the secret (``secrets.token_urlsafe(32)``, 256 random bits) is
compared in constant time with :func:`hmac.compare_digest` against the SHA-256
hash stored for it. A plain hash is the right tool here, not a password hash
(bcrypt, scrypt, argon2): those slow hashes exist to stretch guessable,
low-entropy human passwords, while a 256-bit random secret cannot be guessed
or brute-forced from its hash whatever the hash speed, and checking it costs
microseconds on every request. Secrets are never stored in clear and are
shown exactly once, in the :class:`IssuedCredential` returned on creation.

Invariants: a credential's role and technician never change; revocation is
permanent and idempotent, and the listeners in :attr:`Tenants.on_revoke` are
called once per credential, after the revocation committed (so that open
connections authenticated with it can be cut). Listeners may be sync or
async; they must not raise (an exception propagates to the revoking caller
after the revocation is already durable).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from crdtsync import CrdtsyncError

from .officedb import OfficeDB, Transaction, format_time, parse_time

__all__ = [
    "SCHEMA",
    "AuthenticationError",
    "Credential",
    "CredentialExpired",
    "CredentialRevoked",
    "IssuedCredential",
    "LastOfficeCredential",
    "NotFound",
    "Principal",
    "RevokeListener",
    "Role",
    "Tenant",
    "Tenants",
    "TOKEN_PREFIX",
    "UnknownCredential",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL CHECK (role IN ('office', 'viewer', 'device')),
    technician TEXT,
    label TEXT NOT NULL DEFAULT '',
    secret_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    CHECK ((role = 'device') = (technician IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS credentials_by_tenant ON credentials (tenant, role);
"""

TOKEN_PREFIX = "cs_"
_ID = re.compile(r"[0-9a-f]{16}")
#: Technician ids end up in document names (``planning/{tech}``): keep them to that alphabet.
_TECHNICIAN = re.compile(r"[A-Za-z0-9._@+\-]{1,64}")

RevokeListener = Callable[[str], Awaitable[None] | None]


class Role(StrEnum):
    OFFICE = "office"
    VIEWER = "viewer"
    DEVICE = "device"


class AuthenticationError(CrdtsyncError):
    """A token that does not authenticate; ``reason`` is a stable code for logs and APIs."""

    reason = "invalid_token"

    def __init__(self, message: str, *, credential_id: str = "") -> None:
        super().__init__(message)
        self.credential_id = credential_id


class UnknownCredential(AuthenticationError):
    """Malformed token, unknown credential id, or wrong secret (indistinguishable on purpose)."""

    reason = "unknown_credential"


class CredentialRevoked(AuthenticationError):
    reason = "credential_revoked"


class CredentialExpired(AuthenticationError):
    reason = "credential_expired"


class NotFound(CrdtsyncError):
    """No such tenant or credential (within the tenant asked about)."""


class LastOfficeCredential(CrdtsyncError):
    """Refused: revoking this credential would leave the tenant without an office credential."""


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential as stored, without its secret."""

    id: str
    tenant_id: str
    role: Role
    technician: str | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A new credential and its token; the token exists only here, never again."""

    credential: Credential
    token: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated request or connection acts for."""

    tenant_id: str
    credential_id: str
    role: Role
    technician: str | None = None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_id() -> str:
    return secrets.token_hex(8)


def _credential(row: sqlite3.Row) -> Credential:
    return Credential(
        id=row["id"],
        tenant_id=row["tenant"],
        role=Role(row["role"]),
        technician=row["technician"],
        label=row["label"],
        created_at=parse_time(row["created_at"]),
        expires_at=parse_time(row["expires_at"]) if row["expires_at"] else None,
        revoked_at=parse_time(row["revoked_at"]) if row["revoked_at"] else None,
    )


def _tenant(row: sqlite3.Row) -> Tenant:
    return Tenant(row["id"], row["name"], parse_time(row["created_at"]))


def _split_token(token: str) -> tuple[str, str]:
    """``(credential id, secret)``, or raise :class:`UnknownCredential`."""
    if not token.startswith(TOKEN_PREFIX):
        raise UnknownCredential("not a crdtsync token")
    credential_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not secret or not _ID.fullmatch(credential_id):
        raise UnknownCredential("malformed token")
    return credential_id, secret


_COLUMNS = "id, tenant, role, technician, label, created_at, expires_at, revoked_at"


class Tenants:
    """Tenants and credentials in an :class:`~server.officedb.OfficeDB` opened with :data:`SCHEMA`.

    ``clock`` returns the current aware datetime (tests pass their own).
    """

    def __init__(self, db: OfficeDB, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Called with the credential id after a revocation committed.
        self.on_revoke: list[RevokeListener] = []

    # -- tenants -------------------------------------------------------------------------------

    async def create_tenant(self, name: str) -> Tenant:
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("a tenant name is 1 to 200 characters")
        tenant = Tenant(_new_id(), name, self.clock())
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                (tenant.id, tenant.name, format_time(tenant.created_at)),
            )
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self.db.read() as tx:
            row = await tx.fetchone(
                "SELECT id, name, created_at FROM tenants WHERE id = ?", (tenant_id,)
            )
        if row is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return _tenant(row)

    async def list_tenants(self) -> list[Tenant]:
        async with self.db.read() as tx:
            rows = await tx.fetchall("SELECT id, name, created_at FROM tenants ORDER BY created_at")
        return [_tenant(row) for row in rows]

    # -- credentials ---------------------------------------------------------------------------

    async def create_credential(
        self,
        tenant_id: str,
        role: Role | str,
        *,
        technician: str | None = None,
        label: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedCredential:
        """Issue a credential; raises :class:`NotFound` for an unknown tenant, ValueError else."""
        role = Role(role)
        if (role is Role.DEVICE) != (technician is not None):
            raise ValueError("a technician is given for device credentials, and only for them")
        if technician is not None and not _TECHNICIAN.fullmatch(technician):
            raise ValueError("a technician id is 1-64 of A-Z a-z 0-9 . _ @ + -")
        if len(label) > 200:
            raise ValueError("a label is at most 200 characters")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise ValueError("expires_at is in the past")
        secret = secrets.token_urlsafe(32)
        credential = Credential(
            _new_id(), tenant_id, role, technician, label, now, expires_at, None
        )
        async with self.db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)) is None:
                raise NotFound(f"no tenant {tenant_id!r}")
            await tx.execute(
                f"INSERT INTO credentials ({_COLUMNS}, secret_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    credential.id,
                    tenant_id,
                    role.value,
                    technician,
                    label,
                    format_time(now),
                    format_time(expires_at) if expires_at else None,
                    _hash(secret),
                ),
            )
        return IssuedCredential(credential, f"{TOKEN_PREFIX}{credential.id}_{secret}")

    async def get_credential(self, tenant_id: str, credential_id: str) -> Credential:
        async with self.db.read() as tx:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM credentials WHERE id = ? AND tenant = ?",
                (credential_id, tenant_id),
            )
        if row is None:
            raise NotFound(f"no credential {credential_id!r}")
        return _credential(row)

    async def list_credentials(
        self,
        tenant_id: str,
        roles: tuple[Role, ...] = tuple(Role),
        *,
        include_revoked: bool = False,
    ) -> list[Credential]:
        marks = ", ".join("?" for _ in roles)
        sql = f"SELECT {_COLUMNS} FROM credentials WHERE tenant = ? AND role IN ({marks})"
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                sql + " ORDER BY created_at, id", (tenant_id, *(r.value for r in roles))
            )
        return [_credential(row) for row in rows]

    async def revoke(
        self, tenant_id: str, credential_id: str, *, keep_last_office: bool = False
    ) -> Credential:
        """Revoke (idempotent); listeners run once, after the first revocation committed.

        With ``keep_last_office``, revoking the tenant's last active office
        credential raises :class:`LastOfficeCredential` and changes nothing.
        """
        now = self.clock()
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM credentials WHERE id = ? AND tenant = ?",
                (credential_id, tenant_id),
            )
            if row is None:
                raise NotFound(f"no credential {credential_id!r}")
            if keep_last_office and row["role"] == Role.OFFICE and row["revoked_at"] is None:
                await self._check_not_last_office(tx, tenant_id, credential_id, now)
            changed = await tx.execute(
                "UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (format_time(now), credential_id),
            )
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM credentials WHERE id = ?", (credential_id,)
            )
        if row is None:  # impossible: it was there inside the same transaction
            raise NotFound(f"no credential {credential_id!r}")
        if changed:
            for listener in list(self.on_revoke):
                result = listener(credential_id)
                if inspect.isawaitable(result):
                    await result
        return _credential(row)

    @staticmethod
    async def _check_not_last_office(
        tx: Transaction, tenant_id: str, credential_id: str, now: datetime
    ) -> None:
        others = await tx.fetchone(
            "SELECT COUNT(*) FROM credentials WHERE tenant = ? AND role = 'office' AND id <> ? "
            "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
            (tenant_id, credential_id, format_time(now)),
        )
        if others is None or int(others[0]) == 0:
            raise LastOfficeCredential("the tenant's last active office credential")

    async def authenticate(self, token: str) -> Principal:
        """The principal ``token`` acts for.

        Raises :class:`UnknownCredential` (malformed, unknown id or wrong
        secret), :class:`CredentialRevoked` or :class:`CredentialExpired`; the
        revoked/expired distinction is only made once the secret matched.
        """
        credential_id, secret = _split_token(token)
        async with self.db.read() as tx:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS}, secret_sha256 FROM credentials WHERE id = ?",
                (credential_id,),
            )
        if row is None:
            raise UnknownCredential("unknown credential", credential_id=credential_id)
        if not hmac.compare_digest(_hash(secret).encode(), str(row["secret_sha256"]).encode()):
            raise UnknownCredential("wrong secret", credential_id=credential_id)
        credential = _credential(row)
        if credential.revoked_at is not None:
            raise CredentialRevoked("credential revoked", credential_id=credential_id)
        if credential.expires_at is not None and self.clock() >= credential.expires_at:
            raise CredentialExpired("credential expired", credential_id=credential_id)
        return Principal(
            credential.tenant_id, credential.id, credential.role, credential.technician
        )
