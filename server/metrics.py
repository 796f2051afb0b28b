"""Prometheus metrics of one relay app, in one :class:`CollectorRegistry` per app (no globals).

Three sources feed ``GET /metrics``:

* :class:`RelayStatsCollector` reads the relay's :class:`crdtsync.RelayStats`
  counters at scrape time (connections, documents loaded, updates received
  and stored, acks, commits, rejected updates, protocol errors, slow
  consumers, compactions, evictions). Counters are exported as counters:
  rates come from Prometheus (``rate(crdtsync_relay_updates_stored_total[1m])``).
* :class:`RelayMetrics` implements :class:`RelayObserver`, the calls the relay
  core makes on its hot path (commit batch sizes and durations, ack latency,
  rejections by error code). Each call is a few arithmetic operations.
* :meth:`RelayMetrics.refresh` reads what lives in the office database (the
  webhook backlog, the change feed head) just before a scrape renders.

Metric names start with ``crdtsync_``; units are seconds and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crdtsync import ErrorCode, RelayStats

from .changes import ChangeFeed
from .events import EventBroker
from .webhooks import WebhookRegistry

__all__ = ["CONTENT_TYPE", "RelayMetrics", "RelayObserver", "RelayStatsCollector"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RelayObserver(Protocol):
    """What the relay core reports as it works; every method must return fast and never raise."""

    def on_commit(self, batch_size: int, seconds: float) -> None:
        """A group commit of ``batch_size`` updates took ``seconds`` (store call, wall time)."""

    def on_ack(self, latency_seconds: float) -> None:
        """An Ack was queued ``latency_seconds`` after its Push was received."""

    def on_reject(self, document: str, code: int) -> None:
        """An update to ``document`` was refused with error ``code`` (an ErrorCode value)."""


#: (metric name without _total, RelayStats field, help)
_COUNTERS = (
    ("crdtsync_relay_connections_opened", "connections_total", "Connections accepted."),
    ("crdtsync_relay_updates_received", "updates_received", "Updates received from peers."),
    ("crdtsync_relay_updates_stored", "updates_stored", "Updates durably stored."),
    ("crdtsync_relay_acks_sent", "acks_sent", "Acks sent after commit."),
    ("crdtsync_relay_commits", "commits", "Group commits."),
    ("crdtsync_relay_rejected_updates", "rejected_updates", "Updates refused."),
    ("crdtsync_relay_protocol_errors", "protocol_errors", "Protocol errors from peers."),
    ("crdtsync_relay_slow_consumers", "slow_consumers", "Peers cut for falling behind."),
    ("crdtsync_relay_compactions", "compactions", "Document compactions."),
    ("crdtsync_relay_evictions", "evictions", "Idle documents evicted from memory."),
)
_GAUGES = (
    ("crdtsync_relay_connections", "connections", "Open connections."),
    ("crdtsync_relay_documents_loaded", "rooms_loaded", "Documents loaded in memory."),
    ("crdtsync_relay_last_commit_batch_size", "last_batch_size", "Size of the last commit."),
)


class RelayStatsCollector(Collector):
    """Exports a relay's :class:`RelayStats` at scrape time; nothing when no relay is running."""

    def __init__(self, stats: Callable[[], RelayStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        if stats is None:
            return []
        metrics: list[Metric] = []
        for name, attr, doc in _COUNTERS:
            metrics.append(CounterMetricFamily(name, doc, value=getattr(stats, attr)))
        for name, attr, doc in _GAUGES:
            metrics.append(GaugeMetricFamily(name, doc, value=getattr(stats, attr)))
        return metrics


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class RelayMetrics:
    """The app's metrics; a :class:`RelayObserver` for the relay core."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commit_batch_size = Histogram(
            "crdtsync_relay_commit_batch_size",
            "Updates per group commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "crdtsync_relay_commit_seconds",
            "Duration of a group commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ack_latency = Histogram(
            "crdtsync_relay_ack_latency_seconds",
            "From receiving a Push to queueing its Ack (includes the commit).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "crdtsync_relay_update_rejections",
            "Refused updates by error code (the sum is crdtsync_relay_rejected_updates_total).",
            ["code"],
            registry=r,
        )
        self.webhook_backlog = Gauge(
            "crdtsync_webhook_backlog",
            "Undelivered webhook deliveries; state=failing counts those past the retry threshold.",
            ["state"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "crdtsync_webhook_attempts",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=r,
        )
        self.change_feed_head = Gauge(
            "crdtsync_change_feed_head_seq", "Highest change sequence number recorded.", registry=r
        )
        self.event_subscribers = Gauge(
            "crdtsync_event_subscribers", "Open server-sent event streams.", registry=r
        )
        self.event_subscribers_dropped = Gauge(
            "crdtsync_event_subscribers_dropped",
            "Event streams ended because the client fell behind (since start).",
            registry=r,
        )

    # -- RelayObserver -------------------------------------------------------------------------

    def on_commit(self, batch_size: int, seconds: float) -> None:
        self.commit_batch_size.observe(batch_size)
        self.commit_seconds.observe(seconds)

    def on_ack(self, latency_seconds: float) -> None:
        self.ack_latency.observe(latency_seconds)

    def on_reject(self, document: str, code: int) -> None:
        # The document is deliberately not a label: unbounded label values would
        # make one time series per document.
        self.rejections.labels(code=_code_name(code)).inc()

    # -- other sources -------------------------------------------------------------------------

    def watch_relay(self, stats: Callable[[], RelayStats | None]) -> None:
        """Export ``stats()`` (the running relay's counters) on every scrape."""
        self.registry.register(RelayStatsCollector(stats))

    def on_webhook_attempt(self, delivered: bool) -> None:
        self.webhook_attempts.labels(outcome="delivered" if delivered else "failed").inc()

    async def refresh(
        self,
        *,
        changes: ChangeFeed | None = None,
        webhooks: WebhookRegistry | None = None,
        events: EventBroker | None = None,
    ) -> None:
        """Read the gauges that live in the database; call before :meth:`render`."""
        if webhooks is not None:
            backlog = await webhooks.backlog()
            self.webhook_backlog.labels(state="pending").set(backlog.pending)
            self.webhook_backlog.labels(state="failing").set(backlog.failing)
        if changes is not None:
            self.change_feed_head.set(await changes.head())
        if events is not None:
            self.event_subscribers.set(events.subscribers)
            self.event_subscribers_dropped.set(events.dropped_total)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
