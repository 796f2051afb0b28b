"""Live change events: replay then live, resume by Last-Event-ID, heartbeats, slow consumers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import create_app
from server.changes import ChangeFeed, NewChange
from server.events import EventBroker, StreamEnd, change_stream
from server.office import SCHEMAS, Office
from server.officedb import OfficeDB

from .conftest import TIMEOUT, Tenant, bearer, fast_settings, make_tenant, served


@dataclass
class Event:
    id: int | None = None
    event: str = "message"
    data: Any = None
    comments: list[str] = field(default_factory=list)


async def read_events(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """Parse ``text/event-stream`` lines; comments-only blocks come out as events without data."""
    current = Event()
    async for line in lines:
        if line == "":
            if current.data is not None or current.comments:
                yield current
            current = Event()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = int(value)
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data = json.loads(value)


@asynccontextmanager
async def events_of(
    url: str, token: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> AsyncIterator[AsyncIterator[Event]]:
    headers = {**bearer(token), **(headers or {})}
    async with (
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client,
        client.stream("GET", "/api/v1/events", headers=headers, **kwargs) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield read_events(response.aiter_lines())


async def next_change(events: AsyncIterator[Event]) -> Event:
    async with asyncio.timeout(TIMEOUT):
        async for event in events:
            if event.data is not None:
                return event
    raise AssertionError("stream ended")


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[str, Office, Tenant]]:
    app = create_app(fast_settings(tmp_path / "relay.db", event_heartbeat_seconds=0.05))
    async with served(app) as url:
        office: Office = app.state.office
        yield url, office, await make_tenant(office)


async def test_replay_then_live_then_resume(live: tuple[str, Office, Tenant]) -> None:
    url, office, tenant = live
    other = await make_tenant(office, "Other")
    first = await office.changes.record(tenant.id, "wo/1", "document.updated", {"n": 1})
    async with events_of(url, tenant.office_token, params={"cursor": 0}) as events:
        replayed = await next_change(events)
        assert replayed.id == first
        assert replayed.data["document"] == "wo/1"
        await office.changes.record(other.id, "wo/9", "document.updated")  # not ours
        second = await office.changes.record(tenant.id, "wo/2", "document.updated", {"n": 2})
        live_event = await next_change(events)
        assert (live_event.id, live_event.data["data"]) == (second, {"n": 2})
    third = await office.changes.record(tenant.id, "wo/3", "document.updated")
    async with events_of(
        url, tenant.office_token, headers={"Last-Event-ID": str(second)}
    ) as events:
        assert (await next_change(events)).id == third


async def test_without_a_cursor_the_stream_starts_now_and_sends_heartbeats(
    live: tuple[str, Office, Tenant],
) -> None:
    url, office, tenant = live
    await office.changes.record(tenant.id, "wo/old", "document.updated")
    async with events_of(url, tenant.office_token) as events:
        async with asyncio.timeout(TIMEOUT):
            async for event in events:
                if "keepalive" in event.comments:
                    break
        new = await office.changes.record(tenant.id, "wo/new", "document.updated")
        event = await next_change(events)
        assert (event.id, event.data["document"]) == (new, "wo/new")


async def test_events_need_an_office_or_viewer_credential(
    live: tuple[str, Office, Tenant],
) -> None:
    url, office, tenant = live
    device = await office.tenants.create_credential(tenant.id, "device", technician="tech-7")
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        assert (await client.get("/api/v1/events")).status_code == 401
        response = await client.get("/api/v1/events", headers=bearer(device.token))
        assert response.status_code == 403
        response = await client.get(
            "/api/v1/events", headers={**tenant.headers, "Last-Event-ID": "abc"}
        )
        assert response.status_code == 422


# -- the stream itself, without HTTP --------------------------------------------------------------


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[ChangeFeed]:
    async with OfficeDB(tmp_path / "relay.db", SCHEMAS) as db:
        yield ChangeFeed(db)


async def test_a_subscriber_that_falls_behind_is_dropped_with_a_final_event(
    feed: ChangeFeed,
) -> None:
    broker = EventBroker(queue_size=3)
    feed.after_commit.append(broker.publish)
    stream = change_stream(feed, broker, "t1", 0, heartbeat=0.01)
    assert (await anext(stream)).startswith("retry:")
    assert await anext(stream) == ": keepalive\n\n"  # replay done: the stream is live
    fits = await feed.record_many([NewChange("t1", f"a/{i}", "document.updated") for i in range(3)])
    for change in fits:
        assert (await anext(stream)).startswith(f"id: {change.seq}\n")
    # The client does not read while more changes arrive than the buffer holds.
    await feed.record_many([NewChange("t1", f"b/{i}", "document.updated") for i in range(4)])
    frames = [frame async for frame in stream]
    assert broker.dropped_total == 1
    assert broker.subscribers == 0
    assert len(frames) == 1
    assert frames[0].startswith("event: dropped\n")
    assert json.loads(frames[0].split("data: ")[1]) == {
        "reason": "dropped",
        "last_event_id": fits[-1].seq,
    }


async def test_close_ends_streams_with_a_shutdown_event(feed: ChangeFeed) -> None:
    broker = EventBroker()
    stream = change_stream(feed, broker, "t1", 0, heartbeat=TIMEOUT)
    await anext(stream)
    waiting = asyncio.create_task(anext(stream))
    broker.close()
    assert (await asyncio.wait_for(waiting, TIMEOUT)).startswith("event: shutdown")
    with broker.subscribe("t1") as late:
        assert late.ended is StreamEnd.SHUTDOWN


async def test_changes_recorded_during_the_replay_are_sent_once(feed: ChangeFeed) -> None:
    broker = EventBroker()
    feed.after_commit.append(broker.publish)
    await feed.record_many([NewChange("t1", f"wo/{i}", "document.updated") for i in range(5)])
    stream = change_stream(feed, broker, "t1", 0, heartbeat=TIMEOUT, page_size=2)
    await anext(stream)
    ids = [int((await anext(stream)).split("\n")[0].removeprefix("id: "))]
    # Subscribed already; these land both in the table (seen by the replay) and in the buffer.
    await feed.record_many([NewChange("t1", f"late/{i}", "document.updated") for i in range(3)])
    while len(ids) < 8:
        frame = await asyncio.wait_for(anext(stream), TIMEOUT)
        if frame.startswith("id: "):
            ids.append(int(frame.split("\n")[0].removeprefix("id: ")))
    assert ids == sorted(set(ids))
    assert len(ids) == 8
    await stream.aclose()
