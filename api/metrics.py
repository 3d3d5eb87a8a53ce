"""Prometheus metrics. One registry per app (not the global one), so two apps in one process
never share counters. Gauges that describe the read side are refreshed at scrape time."""

from __future__ import annotations

from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from broker.writer import Commit

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


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
        self.depth = Gauge(
            "cairn_queue_messages",
            "Messages per queue and state",
            ["queue", "state"],
            registry=r,
        )
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

    def set_read_side(
        self, head: int, positions: dict[str, int], depths: dict[str, dict[str, int]]
    ) -> None:
        self.head.set(head)
        for name, position in positions.items():
            self.projection_position.labels(name).set(position)
            self.projection_lag.labels(name).set(max(0, head - position))
        self.depth.clear()
        for queue, states in depths.items():
            for state, count in states.items():
                self.depth.labels(queue, state).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
