"""The office database connection: lifecycle, transactions, error translation, sharing the file."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from crdtsync import SQLiteStore, StoreError
from server.office import SCHEMAS
from server.officedb import OfficeDB, format_time, parse_time

SCHEMA = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"


async def test_schema_is_idempotent_and_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "office.db"
    for _ in range(2):
        async with OfficeDB(path, [*SCHEMAS, SCHEMA]) as db, db.read() as tx:
            row = await tx.fetchone("PRAGMA journal_mode")
            assert row is not None
            assert row[0] == "wal"
            row = await tx.fetchone("PRAGMA busy_timeout")
            assert row is not None
            assert row[0] == 5000


async def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    async with OfficeDB(tmp_path / "office.db", [SCHEMA]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items (name) VALUES (?)", ("kept",))

        async def failing() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items (name) VALUES (?)", ("dropped",))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await failing()
        async with db.read() as tx:
            rows = await tx.fetchall("SELECT name FROM items")
        assert [row["name"] for row in rows] == ["kept"]


async def test_sqlite_errors_become_store_errors_and_the_connection_stays_usable(
    tmp_path: Path,
) -> None:
    async with OfficeDB(tmp_path / "office.db", [SCHEMA]) as db:

        async def duplicate() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items (name) VALUES (?)", ("a",))
                await tx.execute("INSERT INTO items (name) VALUES (?)", ("a",))

        with pytest.raises(StoreError) as caught:
            await duplicate()
        assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
        with pytest.raises(StoreError):
            async with db.read() as tx:
                await tx.fetchall("SELECT * FROM no_such_table")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items (name) VALUES (?)", ("b",))
        async with db.read() as tx:
            rows = await tx.fetchall("SELECT name FROM items")
        assert [row["name"] for row in rows] == ["b"]


async def test_a_cancelled_transaction_leaves_the_connection_clean(tmp_path: Path) -> None:
    async with OfficeDB(tmp_path / "office.db", [SCHEMA]) as db:
        inside = asyncio.Event()

        async def stuck() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items (name) VALUES (?)", ("cancelled",))
                inside.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(stuck())
        await asyncio.wait_for(inside.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items (name) VALUES (?)", ("after",))
        async with db.read() as tx:
            rows = await tx.fetchall("SELECT name FROM items")
        assert [row["name"] for row in rows] == ["after"]


async def test_unopened_and_unopenable_databases_raise_store_error(tmp_path: Path) -> None:
    db = OfficeDB(tmp_path / "office.db")
    with pytest.raises(StoreError):
        await db.ping()
    with pytest.raises(StoreError):
        async with OfficeDB(tmp_path / "missing-dir" / "office.db"):
            pass
    with pytest.raises(StoreError):
        async with OfficeDB(tmp_path / "bad.db", ["CREATE TABLE broken ("]):
            pass


async def test_shares_the_file_with_the_relay_store(tmp_path: Path) -> None:
    """Both connections write the same file concurrently; busy_timeout serialises them."""
    path = tmp_path / "relay.db"
    async with SQLiteStore(path) as store, OfficeDB(path, [SCHEMA]) as db:

        async def office_writes() -> None:
            for i in range(50):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO items (name) VALUES (?)", (f"item-{i}",))

        async def relay_writes() -> None:
            for i in range(50):
                await store.append([("doc", bytes([i % 256]) * 10)])

        await asyncio.gather(office_writes(), relay_writes())
        async with db.read() as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM items")
        assert row is not None
        assert row[0] == 50
        assert len((await store.load("doc")).updates) == 50


def test_times_are_fixed_width_utc_text_that_sorts_as_time() -> None:
    moment = datetime(2024, 5, 1, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    text = format_time(moment)
    assert text == "2024-05-01T08:00:00.000005Z"
    assert parse_time(text) == moment
    later = format_time(datetime(2024, 5, 1, 8, 0, 1, tzinfo=UTC))
    assert text < later
    assert len(text) == len(later)
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2024, 5, 1))
