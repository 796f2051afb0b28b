"""End to end: devices over real websockets against a relay process with a real SQLite file.

The relay runs as ``python -m server`` (the ``relay_process`` fixture: a free
port, killable with SIGKILL, restartable on the same port). What the relay
durably holds is checked by opening its SQLite file directly while it is dead,
or through a fresh device that syncs from it.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pycrdt import Array, Doc, Map, Text
from websockets.asyncio.client import connect

from crdtsync import Backoff, Device, ErrorCode, SQLiteStore, websocket_connector
from crdtsync.protocol import Error, decode_frame
from crdtsync.store import build_doc

from ..conftest import RelayProcess

pytestmark = pytest.mark.e2e

TIMEOUT = 20.0
BACKOFF = Backoff(initial=0.05, maximum=0.5)


def content(doc: Doc[Any]) -> dict[str, Any]:
    return {
        "fields": doc.get("fields", type=Map).to_py(),
        "notes": str(doc.get("notes", type=Text)),
        "items": doc.get("items", type=Array).to_py(),
    }


def fields_of(doc: Doc[Any]) -> Map[Any]:
    return doc.get("fields", type=Map)


async def relay_content(db: Path, name: str) -> dict[str, Any]:
    """What the relay's SQLite file holds for ``name`` (open it only while the relay is dead)."""
    async with SQLiteStore(db) as store:
        return content(build_doc(await store.load(name)))


# -- convergence -----------------------------------------------------------------------------------


def edit_offline(device: Device, tag: str, docs: list[str]) -> None:
    for name in docs:
        doc = device.doc(name)
        with doc.transaction():
            fields_of(doc)[f"{tag}-technician"] = f"tech {tag}"
            fields_of(doc)[f"{tag}-hours"] = "2.5"
        fields_of(doc)["status"] = f"closed by {tag}"
        doc.get("notes", type=Text).insert(len("Visit: "), f"[{tag} was here]")
        doc.get("items", type=Array).append(f"{tag}-part")


@pytest.mark.parametrize("first", ["a", "b"])
async def test_offline_edits_converge_and_a_fresh_device_gets_them(
    relay_process: RelayProcess, tmp_path: Path, first: str
) -> None:
    docs = ["wo-1", "wo-2", "wo-3"]
    connector = relay_process.connector()
    async with (
        Device(tmp_path / "a.db", connector, documents=docs, backoff=BACKOFF) as a,
        Device(tmp_path / "b.db", connector, documents=docs, backoff=BACKOFF) as b,
    ):
        for i, name in enumerate(docs):
            base = a.doc(name)
            with base.transaction():
                fields_of(base)["customer"] = f"customer {i}"
                fields_of(base)["status"] = "open"
                base.get("notes", type=Text).insert(0, "Visit: ")
                base.get("items", type=Array).append("base-part")
        await a.wait_synced(TIMEOUT)
        await b.wait_for(
            lambda s: s.in_sync and all(content(b.doc(n)) == content(a.doc(n)) for n in docs),
            TIMEOUT,
        )
        for device in (a, b):
            device.go_offline()
            await device.wait_for(lambda s: not s.connected, TIMEOUT)
        edit_offline(a, "a", docs)
        edit_offline(b, "b", docs)

        order = (a, b) if first == "a" else (b, a)
        for device in order:
            device.go_online()
            await device.wait_synced(TIMEOUT)
        await order[0].wait_for(
            lambda _: all(content(a.doc(n)) == content(b.doc(n)) for n in docs), TIMEOUT
        )
        merged = {name: content(a.doc(name)) for name in docs}

    for i, name in enumerate(docs):
        doc = merged[name]
        assert doc["fields"]["customer"] == f"customer {i}"
        assert doc["fields"]["status"] in {"closed by a", "closed by b"}
        assert {"a-technician", "a-hours", "b-technician", "b-hours"} <= set(doc["fields"])
        notes = doc["notes"]
        assert notes.startswith("Visit: ")
        assert len(notes) == len("Visit: [a was here][b was here]")
        assert "[a was here]" in notes
        assert "[b was here]" in notes
        assert sorted(doc["items"]) == ["a-part", "b-part", "base-part"]

    # A device that never saw either of them gets everything from the relay alone.
    async with Device(tmp_path / "c.db", connector, documents=docs, backoff=BACKOFF) as c:
        await c.wait_synced(TIMEOUT)
        assert {name: content(c.doc(name)) for name in docs} == merged


# -- the relay is SIGKILLed while devices write ----------------------------------------------------


def sigkill(relay: RelayProcess) -> None:
    relay.kill()
    if relay.process is not None and relay.process.stdout is not None:
        relay.process.stdout.close()  # start() opens a new pipe; kill() leaves the old one open


def outbox_seqs(path: Path) -> set[int]:
    """The outbox rows still waiting for an Ack in a device's file (read-only peek)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {int(row[0]) for row in db.execute("SELECT seq FROM log WHERE pending = 1")}
    finally:
        db.close()


async def test_acknowledged_edits_survive_a_relay_sigkill(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    docs = ["wo-1", "wo-2"]
    edits, kill_at = 300, 160
    connector = relay_process.connector()
    paths = {tag: tmp_path / f"{tag}.db" for tag in ("a", "b")}
    async with (
        Device(paths["a"], connector, documents=docs, backoff=BACKOFF) as a,
        Device(paths["b"], connector, documents=docs, backoff=BACKOFF) as b,
    ):
        devices = {"a": a, "b": b}
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        # key -> (document, outbox seq of the one transaction that wrote it)
        written: dict[str, dict[str, tuple[str, int]]] = {"a": {}, "b": {}}

        def write(tag: str, i: int) -> None:
            name, key = docs[i % len(docs)], f"{tag}-{i:03d}"
            fields_of(devices[tag].doc(name))[key] = f"value {i}"
            written[tag][key] = (name, devices[tag].store.last_outbox_seq(name))

        acknowledged: dict[str, set[str]] = {}
        for i in range(edits):
            for tag in devices:
                write(tag, i)
            if i % 5 == 4:
                await asyncio.sleep(0)  # let the devices send and read acks
            if i == kill_at - 10:
                # Make the crash meaningful: each device has had edits acknowledged.
                for tag, device in devices.items():
                    count = len(written[tag])
                    await device.wait_for(lambda s, n=count: s.total_pending < n, TIMEOUT)
            if i == kill_at:
                sigkill(relay_process)
                for tag in devices:
                    waiting = outbox_seqs(paths[tag])
                    acknowledged[tag] = {
                        key for key, (_, seq) in written[tag].items() if seq not in waiting
                    }
                    assert acknowledged[tag], f"device {tag}: no edit acknowledged before the kill"

        # Every edit acknowledged before the kill is in the relay's file (the relay is dead).
        on_disk: set[str] = set()
        for name in docs:
            on_disk |= set((await relay_content(relay_process.db, name))["fields"])
        for tag in devices:
            missing = acknowledged[tag] - on_disk
            assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
        assert a.status.total_pending > 0 or b.status.total_pending > 0

        # Same port: the devices reconnect by themselves and resend what the relay lacks.
        await asyncio.to_thread(relay_process.start)
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        for tag, device in devices.items():
            assert device.status.reconnects >= 1
            assert device.store.pending_all() == {}
            assert outbox_seqs(paths[tag]) == set()

    async with Device(tmp_path / "c.db", connector, documents=docs, backoff=BACKOFF) as c:
        await c.wait_synced(TIMEOUT)
        stored = {name: fields_of(c.doc(name)).to_py() for name in docs}
    expected = {name: {} for name in docs}
    for tag in ("a", "b"):
        for i in range(edits):
            expected[docs[i % len(docs)]][f"{tag}-{i:03d}"] = f"value {i}"
    assert stored == expected
    assert sum(len(fields) for fields in stored.values()) == 2 * edits


# -- a device restarted while offline --------------------------------------------------------------

_KILLED_DEVICE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pycrdt import Map, Text
    from crdtsync import Device

    async def main(path):
        async with Device(path, None, documents=["wo-9"]) as device:
            doc = device.doc("wo-9")
            doc.get("fields", type=Map)["written"] = "before the crash"
            doc.get("notes", type=Text).insert(0, "unsent note")
            print("pending", device.status.pending["wo-9"], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: a hard kill

    asyncio.run(main(sys.argv[1]))
    """
)


async def edit_and_close(path: Path, connector: Any) -> None:
    async with Device(path, connector, documents=["wo-9"], online=False) as device:
        doc = device.doc("wo-9")
        fields_of(doc)["written"] = "before the crash"
        doc.get("notes", type=Text).insert(0, "unsent note")
        assert device.status.pending["wo-9"] == 2


async def edit_and_get_killed(path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_DEVICE,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert stdout.decode().split() == ["pending", "2"]


@pytest.mark.parametrize("ending", ["closed", "killed"])
async def test_device_restarted_while_offline_still_syncs(
    relay_process: RelayProcess, tmp_path: Path, ending: str
) -> None:
    path = tmp_path / "a.db"
    connector = relay_process.connector()
    if ending == "closed":
        await edit_and_close(path, connector)
    else:
        await edit_and_get_killed(path)

    async with Device(path, connector, backoff=BACKOFF) as restarted:
        assert restarted.documents == ["wo-9"]
        assert restarted.status.pending == {"wo-9": 2}
        await restarted.wait_synced(TIMEOUT)
        assert restarted.store.pending_all() == {}

    async with Device(tmp_path / "b.db", connector, documents=["wo-9"], backoff=BACKOFF) as b:
        await b.wait_synced(TIMEOUT)
        assert fields_of(b.doc("wo-9")).to_py() == {"written": "before the crash"}
        assert str(b.doc("wo-9").get("notes", type=Text)) == "unsent note"


# -- token, health, garbage ------------------------------------------------------------------------


@pytest.fixture
def secured_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    relay = RelayProcess(db=tmp_path / "secured.db", token="s3cret")
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


async def expect_refusal(websocket: Any, code: ErrorCode, close_code: int) -> None:
    """The relay answers with one Error frame of ``code``, then closes with ``close_code``."""
    frame = decode_frame(await asyncio.wait_for(websocket.recv(), TIMEOUT))
    assert frame.document == ""
    assert isinstance(frame.message, Error)
    assert frame.message.error_code == code
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(websocket.recv(), TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == close_code


@pytest.mark.parametrize("presented", ["none", "wrong-header", "wrong-query"])
async def test_a_missing_or_wrong_token_is_refused(
    secured_relay: RelayProcess, presented: str
) -> None:
    url, headers = secured_relay.sync_url, {}
    if presented == "wrong-header":
        headers = {"Authorization": "Bearer guess"}
    elif presented == "wrong-query":
        url += "?token=guess"
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as websocket:
        await expect_refusal(websocket, ErrorCode.UNAUTHORIZED, 4401)


async def test_a_device_with_a_wrong_token_reports_it(
    secured_relay: RelayProcess, tmp_path: Path
) -> None:
    connector = secured_relay.connector(token="guess")
    async with Device(tmp_path / "a.db", connector, documents=["wo-1"], backoff=BACKOFF) as device:
        await device.wait_for(
            lambda s: s.last_error is not None and "4401" in s.last_error, TIMEOUT
        )
        assert not device.status.in_sync


async def test_the_right_token_works_as_header_and_as_query(
    secured_relay: RelayProcess, tmp_path: Path
) -> None:
    by_header = websocket_connector(secured_relay.sync_url, token="s3cret")
    by_query = websocket_connector(f"{secured_relay.sync_url}?token=s3cret")
    async with (
        Device(tmp_path / "a.db", by_header, documents=["wo-1"], backoff=BACKOFF) as a,
        Device(tmp_path / "b.db", by_query, documents=["wo-1"], backoff=BACKOFF) as b,
    ):
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        fields_of(a.doc("wo-1"))["from"] = "header"
        fields_of(b.doc("wo-1"))["via"] = "query"
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        expected = {"from": "header", "via": "query"}
        for device in (a, b):
            await device.wait_for(
                lambda _, d=device: fields_of(d.doc("wo-1")).to_py() == expected, TIMEOUT
            )


async def test_healthz_reports_ok(relay_process: RelayProcess) -> None:
    async with httpx.AsyncClient(base_url=relay_process.http_url, timeout=TIMEOUT) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["version"], str)


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", "hello relay"], ids=["binary", "text"])
async def test_garbage_closes_only_its_own_connection(
    relay_process: RelayProcess, tmp_path: Path, garbage: bytes | str
) -> None:
    connector = relay_process.connector()
    async with (
        Device(tmp_path / "a.db", connector, documents=["wo-1"], backoff=BACKOFF) as a,
        Device(tmp_path / "b.db", connector, documents=["wo-1"], backoff=BACKOFF) as b,
    ):
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        async with connect(relay_process.sync_url, open_timeout=TIMEOUT) as websocket:
            await websocket.send(garbage)
            await expect_refusal(websocket, ErrorCode.MALFORMED_FRAME, 1002)

        fields_of(a.doc("wo-1"))["after"] = "garbage"
        await a.wait_synced(TIMEOUT)
        await b.wait_for(lambda _: fields_of(b.doc("wo-1")).get("after") == "garbage", TIMEOUT)
        assert a.status.reconnects == 0
        assert b.status.reconnects == 0
