"""``crdtsync-relay tenant|key ...``: bootstrap tenants and keys from the command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.__main__ import settings_from_args
from server.admin import admin_main
from server.office import SCHEMAS
from server.officedb import OfficeDB
from server.tenants import CredentialRevoked, Principal, Role, Tenants

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert admin_main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


async def authenticate(db: Path, token: str) -> Principal:
    async with OfficeDB(db, SCHEMAS) as office_db:
        return await Tenants(office_db).authenticate(token)


def test_tenant_create_prints_an_office_key_that_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "relay.db"
    created = run(capsys, "tenant", "create", "Acme Service", "--db", str(db))
    assert created["name"] == "Acme Service"
    principal = asyncio.run(authenticate(db, created["office_key"]))
    assert principal.tenant_id == created["tenant_id"]
    assert principal.role is Role.OFFICE
    listed = run(capsys, "tenant", "list", "--db", str(db))
    assert [(t["tenant_id"], t["name"]) for t in listed] == [(created["tenant_id"], "Acme Service")]


def test_key_create_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "relay.db"
    tenant = run(capsys, "tenant", "create", "Acme", "--db", str(db))["tenant_id"]
    viewer = run(
        capsys, "key", "create", "--tenant", tenant, "--role", "viewer", "--db", str(db),
        "--label", "reports", "--expires-in-days", "30",
    )  # fmt: skip
    assert viewer["role"] == "viewer"
    assert viewer["expires_at"] is not None
    assert asyncio.run(authenticate(db, viewer["key"])).role is Role.VIEWER
    listed = run(capsys, "key", "list", "--tenant", tenant, "--db", str(db))
    assert sorted(c["role"] for c in listed) == ["office", "viewer"]
    revoked = run(
        capsys, "key", "revoke", "--tenant", tenant, viewer["credential_id"], "--db", str(db)
    )
    assert revoked["revoked_at"] is not None
    with pytest.raises(CredentialRevoked):
        asyncio.run(authenticate(db, viewer["key"]))


def test_errors_exit_with_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "relay.db")
    assert admin_main(["key", "create", "--tenant", "nope", "--role", "office", "--db", db]) == 1
    assert "no tenant" in capsys.readouterr().err
    assert admin_main(["tenant", "create", " ", "--db", db]) == 1
    with pytest.raises(SystemExit) as usage:
        admin_main(["key", "create", "--tenant", "x", "--role", "device", "--db", db])
    assert usage.value.code == 2


def test_the_command_dispatches_admin_commands_and_still_serves_by_flags(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    result = subprocess.run(
        [sys.executable, "-m", "server", "tenant", "create", "Acme", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout)["office_key"].startswith("cs_")
    settings = settings_from_args(["--port", "0", "--db", str(db), "--log-format", "json"])
    assert settings.port == 0
    assert settings.db == db
    assert settings.log_format == "json"
