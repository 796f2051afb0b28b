"""Structured logs, and the relay process end to end: JSON lines, event streams ended on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server.logs import JsonFormatter

from .conftest import TIMEOUT, bearer

ROOT = Path(__file__).resolve().parents[2]


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord(
        "crdtsync.audit", logging.WARNING, __file__, 1, "refused %s", ("POST /x",), None
    )
    record.tenant = "t1"
    record.status = 403
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "refused POST /x"
    assert (entry["level"], entry["logger"]) == ("warning", "crdtsync.audit")
    assert (entry["tenant"], entry["status"]) == ("t1", 403)
    assert entry["time"].endswith("Z")
    try:
        raise ValueError("multi\nline")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError" in json.loads(line)["exception"]


def _start(db: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", "0", "--db", str(db), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("crdtsync relay listening on "):
            return process, line.rsplit(" ", 1)[1].strip()
    process.kill()
    raise AssertionError(f"relay did not start: {process.communicate()[1]}")


@pytest.mark.e2e
async def test_relay_process_logs_json_and_ends_event_streams_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    created = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server", "tenant", "create", "Acme", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    token = json.loads(created.stdout)["office_key"]
    process, url = await asyncio.to_thread(
        _start, db, "--log-format", "json", "--log-level", "info"
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
            response = await client.get("/api/v1/devices")  # refused: an audit line
            assert response.status_code == 401
            async with client.stream("GET", "/api/v1/events", headers=bearer(token)) as stream:
                lines = stream.aiter_lines()
                assert (await anext(lines)).startswith("retry:")
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(TIMEOUT):
                    rest = [line async for line in lines]
        assert "event: shutdown" in rest
        # uvicorn re-raises the signal once it has shut down cleanly.
        status = await asyncio.wait_for(asyncio.to_thread(process.wait), TIMEOUT)
        assert status in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    entries = [json.loads(line) for line in process.stderr.read().splitlines() if line.strip()]
    assert entries, "no log lines"
    audit = [e for e in entries if e["logger"] == "crdtsync.audit"]
    assert audit[0]["code"] == "missing_credentials"
    assert audit[0]["route"] == "/api/v1/devices"
    assert any(e["message"] == "Application shutdown complete." for e in entries)
