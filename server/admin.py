"""``crdtsync-relay tenant ...`` and ``crdtsync-relay key ...``: bootstrap tenants and keys.

Commands (each prints one JSON document on stdout; a token appears only here):

* ``tenant create NAME [--db PATH]``: a tenant and its first office key,
  ``{"tenant_id": ..., "name": ..., "credential_id": ..., "office_key": ...}``;
* ``tenant list [--db PATH]``: ``[{"tenant_id": ..., "name": ..., "created_at": ...}]``;
* ``key create --tenant ID --role office|viewer [--label L] [--expires-in-days N]``;
* ``key list --tenant ID``: the tenant's credentials (no secrets);
* ``key revoke --tenant ID CREDENTIAL_ID``.

They work on the database file directly, also while a relay serves it (WAL,
short transactions). A key revoked here is refused by the running relay at
its next authentication, but connections it already accepted stay open until
they reconnect: revoke through the HTTP API to cut them at once.
Errors go to stderr with exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crdtsync import CrdtsyncError

from .office import SCHEMAS
from .officedb import OfficeDB, format_time
from .settings import RelaySettings
from .tenants import Credential, NotFound, Role, Tenants

__all__ = ["COMMANDS", "admin_main"]

#: First words of the command line that select an admin command.
COMMANDS = ("tenant", "key")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crdtsync-relay", description="Manage tenants and keys.")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", type=Path, help="SQLite file (default $CRDTSYNC_DB or ./crdtsync.db)")
    groups = parser.add_subparsers(dest="group", required=True)

    tenant = groups.add_parser("tenant", help="tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", parents=[db], help="create a tenant and its office key")
    create.add_argument("name")
    tenant.add_parser("list", parents=[db], help="list tenants")

    key = groups.add_parser("key", help="office and viewer keys").add_subparsers(
        dest="action", required=True
    )
    key_create = key.add_parser("create", parents=[db], help="issue a key")
    key_create.add_argument("--tenant", required=True)
    key_create.add_argument("--role", choices=["office", "viewer"], required=True)
    key_create.add_argument("--label", default="")
    key_create.add_argument("--expires-in-days", type=float)
    key_list = key.add_parser("list", parents=[db], help="list a tenant's credentials")
    key_list.add_argument("--tenant", required=True)
    key_revoke = key.add_parser("revoke", parents=[db], help="revoke a credential")
    key_revoke.add_argument("--tenant", required=True)
    key_revoke.add_argument("credential_id")
    return parser


def _credential_json(credential: Credential) -> dict[str, Any]:
    return {
        "credential_id": credential.id,
        "tenant_id": credential.tenant_id,
        "role": credential.role.value,
        "technician": credential.technician,
        "label": credential.label,
        "created_at": format_time(credential.created_at),
        "expires_at": format_time(credential.expires_at) if credential.expires_at else None,
        "revoked_at": format_time(credential.revoked_at) if credential.revoked_at else None,
    }


async def _tenant(args: argparse.Namespace, tenants: Tenants) -> Any:
    if args.action == "create":
        tenant = await tenants.create_tenant(args.name)
        issued = await tenants.create_credential(tenant.id, Role.OFFICE, label="initial office key")
        return {
            "tenant_id": tenant.id,
            "name": tenant.name,
            "credential_id": issued.credential.id,
            "office_key": issued.token,
        }
    return [
        {"tenant_id": t.id, "name": t.name, "created_at": format_time(t.created_at)}
        for t in await tenants.list_tenants()
    ]


async def _key(args: argparse.Namespace, tenants: Tenants) -> Any:
    if args.action == "create":
        expires = None
        if args.expires_in_days is not None:
            expires = datetime.now(UTC) + timedelta(days=args.expires_in_days)
        issued = await tenants.create_credential(
            args.tenant, args.role, label=args.label, expires_at=expires
        )
        return {**_credential_json(issued.credential), "key": issued.token}
    if args.action == "list":
        await tenants.get_tenant(args.tenant)
        credentials = await tenants.list_credentials(args.tenant, include_revoked=True)
        return [_credential_json(c) for c in credentials]
    return _credential_json(await tenants.revoke(args.tenant, args.credential_id))


async def _run(args: argparse.Namespace) -> Any:
    path = args.db if args.db is not None else RelaySettings().db
    async with OfficeDB(path, SCHEMAS) as db:
        tenants = Tenants(db)
        if args.group == "tenant":
            return await _tenant(args, tenants)
        return await _key(args, tenants)


def admin_main(argv: list[str]) -> int:
    """Run one admin command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        result = asyncio.run(_run(args))
    except (NotFound, ValueError) as exc:
        print(f"crdtsync-relay: {exc}", file=sys.stderr)
        return 1
    except CrdtsyncError as exc:
        print(f"crdtsync-relay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
