"""The change feed: recording, paging by cursor without skips, tenant scoping, the HTTP page."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest

from crdtsync import StoreError
from server.changes import Change, ChangeFeed, NewChange
from server.office import SCHEMAS, Office
from server.officedb import OfficeDB, Transaction
from server.tenants import Role

from .conftest import Tenant, bearer, make_tenant


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[ChangeFeed]:
    async with OfficeDB(tmp_path / "relay.db", SCHEMAS) as db:
        yield ChangeFeed(db)


async def test_record_and_page_with_a_cursor(feed: ChangeFeed) -> None:
    first = await feed.record("t1", "wo/1", "document.updated", {"n": 1})
    batch = await feed.record_many(
        [NewChange("t1", f"wo/{i}", "document.updated", {"n": i}) for i in range(2, 6)]
    )
    assert [c.seq for c in batch] == list(range(first + 1, first + 5))
    items, cursor = await feed.since("t1", 0, limit=2)
    assert [c.data["n"] for c in items] == [1, 2]
    assert cursor == items[-1].seq
    items, cursor = await feed.since("t1", cursor, limit=10)
    assert [c.data["n"] for c in items] == [3, 4, 5]
    items, same = await feed.since("t1", cursor)
    assert items == []
    assert same == cursor
    assert await feed.head() == batch[-1].seq


async def test_a_feed_transaction_commits_the_callers_rows_with_the_changes(
    feed: ChangeFeed,
) -> None:
    published: list[Sequence[Change]] = []
    feed.after_commit.append(published.append)
    async with feed.db.transaction() as tx:
        await tx.execute("CREATE TABLE extra (n INTEGER)")
    async with feed.transaction() as batch:
        await batch.tx.execute("INSERT INTO extra (n) VALUES (1)")
        first = await batch.record(NewChange("t1", "wo/1", "document.updated"))
        second = await batch.record(NewChange("t1", "wo/2", "document.updated"))
    assert second.seq == first.seq + 1
    assert published == [[first, second]]

    async def failing() -> None:
        async with feed.transaction() as batch:
            await batch.tx.execute("INSERT INTO extra (n) VALUES (2)")
            await batch.record(NewChange("t1", "wo/3", "document.updated"))
            await batch.record(NewChange("t1", "wo/3", "Bad Kind"))

    with pytest.raises(ValueError, match="invalid change kind"):
        await failing()
    async with feed.db.read() as tx:
        rows = await tx.fetchall("SELECT n FROM extra")
    assert [row[0] for row in rows] == [1]
    assert [c.document for c in (await feed.since("t1"))[0]] == ["wo/1", "wo/2"]
    assert len(published) == 1


async def test_tenants_see_only_their_changes(feed: ChangeFeed) -> None:
    await feed.record_many(
        [NewChange("t1", "wo/1", "document.updated"), NewChange("t2", "wo/1", "document.updated")]
    )
    mine, _ = await feed.since("t1")
    theirs, _ = await feed.since("t2")
    assert [c.tenant for c in mine] == ["t1"]
    assert [c.tenant for c in theirs] == ["t2"]


@pytest.mark.parametrize(
    ("kind", "data"),
    [("Document.Updated", {}), ("document..updated", {}), ("", {}), ("ok.kind", {"x": math.nan})],
)
async def test_bad_kinds_and_data_are_refused(
    feed: ChangeFeed, kind: str, data: dict[str, float]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the messages differ)
        await feed.record("t1", "wo/1", kind, data)
    assert await feed.head() == 0


async def test_a_failing_hook_records_nothing_and_publishes_nothing(feed: ChangeFeed) -> None:
    published: list[Sequence[Change]] = []

    async def failing(tx: Transaction, changes: Sequence[Change]) -> None:
        await tx.execute("SELECT * FROM no_such_table")

    feed.in_transaction.append(failing)
    feed.after_commit.append(published.append)
    with pytest.raises(StoreError):
        await feed.record("t1", "wo/1", "document.updated")
    assert await feed.head() == 0
    assert published == []
    feed.in_transaction.clear()
    await feed.record("t1", "wo/1", "document.updated")
    assert len(published) == 1


async def test_concurrent_writers_never_make_a_reader_skip(tmp_path: Path) -> None:
    """Two writers on two connections, a reader on a third polling by cursor: it sees everything.

    Each write is committed before the reader can see any later one, so every
    sequence number the reader gets is above its cursor and none is missed.
    """
    path = tmp_path / "relay.db"
    writers_done = asyncio.Event()
    async with (
        OfficeDB(path, SCHEMAS) as db_a,
        OfficeDB(path, SCHEMAS) as db_b,
        OfficeDB(path, SCHEMAS) as db_r,
    ):
        feeds = [ChangeFeed(db_a), ChangeFeed(db_b)]
        reader = ChangeFeed(db_r)

        async def write(feed: ChangeFeed, name: str) -> None:
            for i in range(60):
                size = 1 + i % 3
                await feed.record_many([NewChange("t1", f"{name}/{i}", "document.updated")] * size)

        async def read() -> list[int]:
            seen: list[int] = []
            cursor = 0
            while True:
                done = writers_done.is_set()
                items, cursor = await reader.since("t1", cursor, limit=7)
                seen.extend(c.seq for c in items)
                if done and not items:
                    return seen

        async def writers() -> None:
            await asyncio.gather(*(write(f, n) for f, n in zip(feeds, "ab", strict=True)))
            writers_done.set()

        seen, _ = await asyncio.gather(read(), writers())
        everything, _ = await reader.since("t1", 0, limit=1000)
    assert seen == sorted(set(seen))
    assert seen == [c.seq for c in everything]
    assert len(seen) == 2 * sum(1 + i % 3 for i in range(60))


async def test_changes_over_http(client: httpx.AsyncClient, office: Office, tenant: Tenant) -> None:
    other = await make_tenant(office, "Other")
    for i in range(5):
        await office.changes.record(tenant.id, f"wo/{i}", "document.updated", {"i": i})
    await office.changes.record(other.id, "wo/x", "document.updated")
    page = (await client.get("/api/v1/changes", params={"limit": 3}, headers=tenant.headers)).json()
    assert [c["data"]["i"] for c in page["items"]] == [0, 1, 2]
    assert page["has_more"] is True
    page = (
        await client.get(
            "/api/v1/changes", params={"cursor": page["next_cursor"]}, headers=tenant.headers
        )
    ).json()
    assert [c["document"] for c in page["items"]] == ["wo/3", "wo/4"]
    assert page["has_more"] is False
    viewer = await office.tenants.create_credential(tenant.id, Role.VIEWER)
    response = await client.get("/api/v1/changes", headers=bearer(viewer.token))
    assert len(response.json()["items"]) == 5
    device = await office.tenants.create_credential(tenant.id, Role.DEVICE, technician="tech-7")
    response = await client.get("/api/v1/changes", headers=bearer(device.token))
    assert response.status_code == 403
    for params in ({"cursor": -1}, {"limit": 0}, {"limit": 1001}, {"cursor": "x"}):
        response = await client.get("/api/v1/changes", params=params, headers=tenant.headers)
        assert response.status_code == 422
