"""Prometheus metrics. One registry per app (not the global one), so two apps in one process
never share counters. Gauges that describe the read side are refreshed at scrape time, and only
then: nothing is spent on them, per queue or otherwise, while nobody scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from broker.writer import Commit

PATH: Final = "/metrics"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


Depths = dict[str, dict[str, int]]
"""Messages per queue and state (``available``, ``delayed``, ``in_flight``)."""


class _QueueDepths:
    """``cairn_queue_messages``, from the depths read for the scrape being answered. A custom
    collector rather than a labelled ``Gauge``: a gauge keeps a child object per series and
    takes a lock per ``labels()`` call, so refreshing one per queue and state at every scrape
    cost ~15 times what handing the values to the exposition does (docs/performance.md)."""

    NAME: Final = "cairn_queue_messages"
    HELP: Final = "Messages per queue and state"

    def __init__(self) -> None:
        self.depths: Depths = {}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["queue", "state"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["queue", "state"])
        for queue, states in self.depths.items():
            for state, count in states.items():
                family.add_metric([queue, state], count)
        yield family


class _Backups:
    """The automatic backups' series, read at scrape time from the state file the process that
    takes the backups writes (``api/backups.py``): any worker may answer the scrape, and only
    one of them takes backups."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def _read(self) -> dict[str, float]:
        try:
            found = msgspec.json.decode(self.state.read_bytes())
        except (OSError, msgspec.DecodeError):
            return {}
        return found if isinstance(found, dict) else {}

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return self.collect()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self._read()
        yield GaugeMetricFamily(
            "cairn_backup_last_success_timestamp_seconds",
            "When the newest verified automatic backup was taken (Unix time; 0: none yet)",
            value=float(state.get("last_success_s", 0.0)),
        )
        yield GaugeMetricFamily(
            "cairn_backup_last_position",
            "The log position the newest verified automatic backup holds",
            value=float(state.get("last_position", 0)),
        )
        yield CounterMetricFamily(
            "cairn_backups_failed",
            "Automatic backups that failed (logged with their reason)",
            value=float(state.get("failed_total", 0)),
        )


class Metrics:
    def __init__(self) -> None:
        # The *_created series double every counter for no use here. (prometheus-client does
        # not annotate this function.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        r = self.registry
        self.requests = Counter(
            "cairn_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "cairn_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=r,
        )
        self.events = Counter(
            "cairn_events_appended", "Events appended to the log", ["type"], registry=r
        )
        self.batch_size = Histogram(
            "cairn_group_commit_commands",
            "Commands carried by one group commit",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.waiting = Gauge(
            "cairn_receive_long_polls_waiting",
            "Receives waiting for a message to arrive",
            registry=r,
        )
        self.subscribers = Gauge(
            "cairn_feed_subscribers", "Server-Sent-Events feeds connected", registry=r
        )
        self.feed_overflows = Counter(
            "cairn_feed_overflows",
            "Times a feed fell too far behind the live tail and went back to the store",
            registry=r,
        )
        self.head = Gauge("cairn_log_head_position", "Last position in the log", registry=r)
        self._depths = _QueueDepths()
        r.register(self._depths)
        self.projection_position = Gauge(
            "cairn_projection_position",
            "Last position a projection applied",
            ["projection"],
            registry=r,
        )
        self.projection_lag = Gauge(
            "cairn_projection_lag_events",
            "Events in the log a projection has not applied",
            ["projection"],
            registry=r,
        )

        self.kafka_connections = Gauge(
            "cairn_kafka_connections", "Kafka protocol connections open", registry=r
        )
        self.kafka_connections_closed = Counter(
            "cairn_kafka_connections_closed",
            "Kafka protocol connections closed, by why",
            ["reason"],
            registry=r,
        )
        self.kafka_requests = Counter(
            "cairn_kafka_requests",
            "Kafka protocol requests answered, by API and the first error of the answer",
            ["api", "error"],
            registry=r,
        )
        self.kafka_produce_bytes = Counter(
            "cairn_kafka_produce_bytes", "Record batch bytes produced through Kafka", registry=r
        )
        self.kafka_fetch_bytes = Counter(
            "cairn_kafka_fetch_bytes", "Record batch bytes fetched through Kafka", registry=r
        )

    def watch_backups(self, state: Path) -> None:
        """Expose the automatic backups' series, kept in the file ``state``."""
        self.registry.register(_Backups(state))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled series, looked up once per (method, route, status): ``labels()`` takes
        # a lock and builds a key each call. Bounded: routes are templates, methods the few
        # HTTP defines (api/http.py answers any other 501), statuses the ones routes answer.
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def observe_commit(self, commit: Commit) -> None:
        self.batch_size.observe(commit.commands)
        for type_, count in commit.event_types.items():
            self.events.labels(type_).inc(count)

    def set_read_side(self, head: int, positions: dict[str, int]) -> None:
        self.head.set(head)
        for name, position in positions.items():
            self.projection_position.labels(name).set(position)
            self.projection_lag.labels(name).set(max(0, head - position))

    def render(self, depths: Depths | None = None) -> bytes:
        """The exposition; ``depths`` (read for this scrape) are its per-queue series, none
        when None. Not kept afterwards: a broker with many queues holds them only while it
        answers."""
        self._depths.depths = depths or {}
        try:
            return generate_latest(self.registry)
        finally:
            self._depths.depths = {}
