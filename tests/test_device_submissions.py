"""Submissions on a device: queued in its file, sent when they can be judged, answered once."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Map

from crdtsync import Backoff, Device, DeviceError, SubmissionStatus
from crdtsync.protocol import BlobPut, Frame, Push, Submit, SubmitResult

from .apps import MapRules
from .device_harness import FAST, TIMEOUT, Network, network

NEVER = Backoff(initial=3600.0, maximum=3600.0)  # a retry that would never come in a test


@pytest.fixture
def rules() -> MapRules:
    return MapRules()


@pytest.fixture(params=["memory", "sqlite"])
async def net(
    request: pytest.FixtureRequest, tmp_path: Path, rules: MapRules
) -> AsyncIterator[Network]:
    async with network(request.param, tmp_path, application=rules) as n:
        yield n


def make(path: Path, net: Network, **options: Any) -> Device:
    options.setdefault("backoff", FAST)
    return Device(
        path, net.connector("tablet"), documents=["wo-1"], blob_chunk_size=1000, **options
    )


def fields(device: Device) -> Map[Any]:
    return device.doc("wo-1").get("fields", type=Map)


async def test_a_submission_goes_after_the_edits_before_it_and_is_answered(
    net: Network, rules: MapRules, tmp_path: Path
) -> None:
    async with make(tmp_path / "a.db", net, online=False) as device:
        fields(device)["hours"] = 3
        fields(device)["done"] = True
        key = device.submit("wo-1", {"note": "finished"})
        state = device.submission(key)
        assert (state.status, state.body, state.answer) == (
            SubmissionStatus.QUEUED,
            {"note": "finished"},
            None,
        )
        assert device.status.submissions_pending == {"wo-1": 1}
        newest = device.store.last_outbox_seq("wo-1")

        device.go_online()
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
        assert state.answer is not None
        assert state.answer["status"] == "accepted"
        assert state.answer["key"] == key
        assert device.status.submissions_pending == {}
        assert device.submissions("wo-1") == [state]
    received = net.taps["tablet"][0].received
    kinds = [type(frame.message) for frame in received]
    assert kinds.index(Push) < kinds.index(Submit)  # the edits travelled first
    submit = next(f.message for f in received if isinstance(f.message, Submit))
    assert (submit.key, submit.seq) == (key, newest)
    assert rules.asked == [("wo-1", key, {"note": "finished"})]


async def test_a_submission_body_must_be_json_and_keys_must_exist(
    net: Network, tmp_path: Path
) -> None:
    async with make(tmp_path / "a.db", net, online=False) as device:
        with pytest.raises(DeviceError):
            device.submit("wo-1", {"when": object()})
        with pytest.raises(DeviceError):
            device.submit("wo-404", {})
        with pytest.raises(DeviceError):
            device.submission("no-such-key")


async def test_a_restarted_device_completes_its_queued_upload_then_its_submission(
    net: Network, rules: MapRules, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    data = os.urandom(5000)
    async with make(path, net, online=False) as device:
        sha = device.add_blob("wo-1", data)
        fields(device)["blob"] = sha
        key = device.submit("wo-1", {"v": 1})
    assert net.taps == {}  # nothing went out before the restart

    async with make(path, net) as device:
        assert device.submission(key).status is SubmissionStatus.QUEUED
        assert device.status.uploads_pending == {"wo-1": 1}
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
        assert device.status.uploads_pending == {}
    kinds = [type(f.message) for f in net.taps["tablet"][0].received]
    last_chunk = max(i for i, kind in enumerate(kinds) if kind is BlobPut)
    assert last_chunk < kinds.index(Submit)  # held until its upload completed
    assert rules.judged == 1
    assert len(rules.asked) == 1  # never 'waiting': the blob was there when it was judged


async def test_a_lost_answer_is_fetched_again_with_the_same_key(
    net: Network, rules: MapRules, tmp_path: Path
) -> None:
    lost: list[Frame] = []

    def first_answer(frame: Frame) -> bool:
        if isinstance(frame.message, SubmitResult) and not lost:
            lost.append(frame)
            return True
        return False

    net.swallow = first_answer
    async with make(tmp_path / "a.db", net) as device:
        await device.wait_synced(TIMEOUT)
        fields(device)["hours"] = 2
        key = device.submit("wo-1", {"v": 1})
        await device.wait_for(lambda s: s.reconnects >= 1, TIMEOUT)
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
    assert len(lost) == 1
    assert [m.key for m in net.received("tablet", Submit)] == [key, key]
    assert rules.judged == 1  # judged and recorded once; the retry got the record
    record = await rules.records.find_submission("t/acme/wo-1", key)
    assert record is not None
    assert json.loads(lost[0].message.body) == json.loads(record.result) == state.answer


async def test_waiting_goes_again_as_soon_as_the_upload_completes(
    net: Network, rules: MapRules, tmp_path: Path
) -> None:
    data = os.urandom(3000)
    async with make(tmp_path / "a.db", net, submission_backoff=NEVER) as device:
        await device.wait_synced(TIMEOUT)
        sha = hashlib.sha256(data).hexdigest()
        fields(device)["blob"] = sha  # referenced before the device has the bytes
        key = device.submit("wo-1", {})
        await device.wait_for(
            lambda _: device.submission(key).status is SubmissionStatus.WAITING, TIMEOUT
        )
        answer = device.submission(key).answer
        assert answer is not None
        assert answer["waiting_for"] == [sha]
        assert device.status.submissions_pending == {"wo-1": 1}

        device.add_blob("wo-1", data)
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
    assert [m.key for m in net.received("tablet", Submit)] == [key, key]


async def test_waiting_without_uploads_is_retried_after_a_backoff(
    net: Network, rules: MapRules, tmp_path: Path
) -> None:
    rules.script.extend(["waiting", "waiting"])
    async with make(tmp_path / "a.db", net, submission_backoff=FAST) as device:
        key = device.submit("wo-1", {})
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
    assert [m.key for m in net.received("tablet", Submit)] == [key] * 3


async def test_a_final_answer_is_never_sent_again(
    net: Network, rules: MapRules, tmp_path: Path
) -> None:
    rules.script.append("rejected")
    path = tmp_path / "a.db"
    async with make(path, net) as device:
        key = device.submit("wo-1", {})
        state = await device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.REJECTED
        assert state.answer is not None
        assert state.answer["reason"] == "rejected by the test"
        device.go_offline()
        await device.wait_for(lambda s: not s.connected, TIMEOUT)
        device.go_online()
        await device.wait_synced(TIMEOUT)
    async with make(path, net) as restarted:
        assert restarted.submission(key) == state
        await restarted.wait_synced(TIMEOUT)
    assert len(net.received("tablet", Submit)) == 1
