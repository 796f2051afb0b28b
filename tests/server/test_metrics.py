"""``/metrics``: relay counters at scrape time, the relay observer, per-app registries."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Map

from crdtsync import Backoff, Device, ErrorCode, websocket_connector
from server import create_app
from server.metrics import RelayMetrics, RelayObserver
from server.office import Office

from .conftest import TIMEOUT, fast_settings, make_tenant, running_app, served


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample of a scrape."""
    result: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            result[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return result


async def test_relay_counters_are_read_at_scrape_time(tmp_path: Path) -> None:
    app = create_app(fast_settings(tmp_path / "relay.db"))
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        before = samples((await client.get("/metrics")).text)
        assert before["crdtsync_relay_connections"] == 0
        assert before["crdtsync_relay_updates_stored_total"] == 0
        connector = websocket_connector(url.replace("http", "ws") + "/sync")
        async with Device(
            tmp_path / "device.db",
            connector,
            documents=["wo-1"],
            backoff=Backoff(initial=0.05, maximum=0.5),
        ) as device:
            device.doc("wo-1").get("fields", type=Map)["status"] = "in_progress"
            await device.wait_synced(timeout=TIMEOUT)
            during = samples((await client.get("/metrics")).text)
        stats = app.state.relay.stats
        assert during["crdtsync_relay_connections"] == 1
        assert during["crdtsync_relay_connections_opened_total"] >= 1
        assert during["crdtsync_relay_documents_loaded"] == 1
        assert during["crdtsync_relay_updates_received_total"] >= 1
        assert during["crdtsync_relay_updates_stored_total"] >= 1
        assert during["crdtsync_relay_acks_sent_total"] >= 1
        assert during["crdtsync_relay_commits_total"] <= stats.commits


async def test_the_observer_feeds_histograms_and_counters(tmp_path: Path) -> None:
    async with running_app(fast_settings(tmp_path / "relay.db")) as (app, client):
        office: Office = app.state.office
        observer: RelayObserver = app.state.metrics
        observer.on_commit(5, 0.004)
        observer.on_commit(1, 0.002)
        observer.on_ack(0.003)
        observer.on_reject("t/x/wo/1", ErrorCode.FORBIDDEN)
        observer.on_reject("t/x/wo/1", 999)
        tenant = await make_tenant(office)
        seq = await office.changes.record(tenant.id, "wo/1", "document.updated")
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        scrape = samples(response.text)
    assert scrape["crdtsync_relay_commit_batch_size_count"] == 2
    assert scrape["crdtsync_relay_commit_batch_size_sum"] == 6
    assert scrape['crdtsync_relay_commit_batch_size_bucket{le="4.0"}'] == 1
    assert scrape["crdtsync_relay_commit_seconds_count"] == 2
    assert scrape["crdtsync_relay_ack_latency_seconds_count"] == 1
    assert scrape['crdtsync_relay_update_rejections_total{code="FORBIDDEN"}'] == 1
    assert scrape['crdtsync_relay_update_rejections_total{code="999"}'] == 1
    assert scrape["crdtsync_change_feed_head_seq"] == seq
    assert scrape['crdtsync_webhook_backlog{state="pending"}'] == 0
    assert scrape["crdtsync_event_subscribers"] == 0


def test_each_app_has_its_own_registry() -> None:
    first, second = RelayMetrics(), RelayMetrics()
    first.on_ack(0.5)
    assert "crdtsync_relay_ack_latency_seconds_count 1.0" in first.render().decode()
    assert "crdtsync_relay_ack_latency_seconds_count 0.0" in second.render().decode()


async def test_metrics_can_be_switched_off(tmp_path: Path) -> None:
    async with running_app(fast_settings(tmp_path / "relay.db", metrics=False)) as (_, client):
        assert (await client.get("/metrics")).status_code == 404
