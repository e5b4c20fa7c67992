"""Prometheus metrics, served at /metrics (kept off the GraphQL schema)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

requests_total = Counter(
    "error_tracker_requests_total",
    "HTTP requests by GraphQL operation and outcome code",
    ["operation", "operation_type", "outcome"],
)
request_seconds = Histogram(
    "error_tracker_request_duration_seconds",
    "HTTP request latency",
    ["operation_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
subscription_executions = Counter(
    "error_tracker_subscription_executions_total",
    "Executions of a subscription document on a published event, each shared by all its subscribers",
)
active_subscriptions = Gauge("error_tracker_active_subscriptions", "Open subscriptions", ["topic"])
events_logged = Counter(
    "error_tracker_events_logged_total", "Error events stored (replays excluded)", ["severity"]
)
database_probe_seconds = Gauge("error_tracker_database_probe_seconds", "Latency of the last database ping")
database_up = Gauge("error_tracker_database_up", "1 when the last database ping succeeded")


_MAX_OPERATION_NAMES = 200
_seen_operations: set[str] = set()


def operation_label(name: str | None) -> str:
    """Operation names are chosen by clients: bound the label's cardinality."""
    if not name:
        return "anonymous"
    if name in _seen_operations:
        return name
    if len(_seen_operations) >= _MAX_OPERATION_NAMES or len(name) > 64 or not name.isidentifier():
        return "other"
    _seen_operations.add(name)
    return name


class _Counts(Protocol):
    counts: dict[tuple[str, str, str], int]


class _IngestCollector(Collector):
    """SDK submissions by outcome, reason and project, read from the ingest domain's plain counters."""

    def __init__(self) -> None:
        self.sources: list[_Counts] = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "error_tracker_sdk_events",
            "SDK submissions: accepted, deduplicated (a resent event id), rate_limited or dropped, by reason",
            labels=["outcome", "reason", "project"],
        )
        totals: dict[tuple[str, str, str], int] = {}
        for source in self.sources:
            for labels, n in list(source.counts.items()):
                totals[labels] = totals.get(labels, 0) + n
        for labels, n in sorted(totals.items()):
            family.add_metric(list(labels), n)
        yield family


_ingest_collector = _IngestCollector()
REGISTRY.register(_ingest_collector)


def register_ingest_counters(counters: _Counts) -> None:
    """The ingest service's counters of this process (one per running app)."""
    _ingest_collector.sources.append(counters)
