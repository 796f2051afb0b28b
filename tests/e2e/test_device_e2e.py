"""End to end: blobs, submissions and followed directories over real websockets.

The relay runs as its own process (``relay_process``), open (no credentials),
so the device acts as an office outside every tenant and uses a document that
is not a work order: its submission is answered ``rejected`` (only work orders
are sent), which is enough to see the Submit and its answer cross the wire and
the device record a final answer. The full flow with work orders and
credentials is in ``test_workflow_e2e``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync import Backoff, Device, SubmissionStatus, UploadState

from ..conftest import RelayProcess

pytestmark = pytest.mark.e2e

TIMEOUT = 20.0
BACKOFF = Backoff(initial=0.05, maximum=0.5)


def relay_blob(db: Path, sha: str) -> bytes | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT data FROM blobs WHERE key = ?", (f"blobs/{sha}",)).fetchone()
    conn.close()
    return None if row is None else bytes(row[0])


async def test_a_blob_queued_offline_uploads_after_a_restart_and_a_submission_is_answered(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "tablet.db"
    connector = relay_process.connector()
    async with Device(path, connector, documents=["wo-1"], online=False) as device:
        sha = device.add_blob("wo-1", data)
        device.doc("wo-1").get("fields", type=Map)["photo"] = sha
        key = device.submit("wo-1", {"technician": "t1"})

    async with Device(path, connector, backoff=BACKOFF, blob_chunk_size=64 * 1024) as device:
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.REJECTED
        assert state.answer is not None
        assert "only work orders are sent" in state.answer["reason"]
        assert [u.state for u in device.uploads()] == [UploadState.UPLOADED]
        await device.wait_synced(TIMEOUT)
    assert sha == hashlib.sha256(data).hexdigest()
    assert relay_blob(relay_process.db, sha) == data


def listed(doc: Doc[Any]) -> list[str]:
    return sorted(doc.get("docs", type=Map).keys())


async def test_a_followed_directory_brings_in_documents_listed_while_offline(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    connector = relay_process.connector()
    async with (
        Device(tmp_path / "office.db", connector, documents=["dir"], backoff=BACKOFF) as office,
        Device(tmp_path / "tablet.db", connector, backoff=BACKOFF) as tablet,
    ):
        tablet.follow("dir", listed)
        await tablet.wait_synced(TIMEOUT)
        tablet.go_offline()
        await tablet.wait_for(lambda s: not s.connected, TIMEOUT)

        office.open("wo-5").get("fields", type=Map)["task"] = "replace the valve"
        office.doc("dir").get("docs", type=Map)["wo-5"] = True
        await office.wait_synced(TIMEOUT)

        tablet.go_online()
        await tablet.wait_for(
            lambda s: (
                s.in_sync
                and "wo-5" in tablet.documents
                and "task" in tablet.doc("wo-5").get("fields", type=Map)
            ),
            TIMEOUT,
        )
        assert tablet.doc("wo-5").get("fields", type=Map).to_py() == {"task": "replace the valve"}
