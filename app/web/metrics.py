"""Prometheus metrics, served at /metrics (kept off the GraphQL schema).

Request metrics are counted here, by the request middleware. Everything else is read from the services
at scrape time (`ServicesCollector`): domains keep plain counters and figures and never import
prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from app.graphql.context import Services
from app.graphql.execution.fanout import SharedResultsExecutor

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


# The labelled children by (operation, operation type, outcome): prometheus_client's `labels()` checks
# and converts the values and takes a lock on every call; a request asks for a child it used before.
# Bounded as the labels are: operation names by _MAX_OPERATION_NAMES, types and outcomes by the catalog.
_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def count_request(operation: str | None, operation_type: str, outcome: str, seconds: float) -> None:
    """One API request: counted by operation and outcome, its latency observed by operation type."""
    key = (operation_label(operation), operation_type, outcome)  # bounded: keyed by the label
    children = _children.get(key)
    if children is None:
        children = _children[key] = (
            requests_total.labels(*key),
            request_seconds.labels(operation_type),
        )
    children[0].inc()
    children[1].observe(seconds)


class ServicesCollector(Collector):
    """What the services count, read when Prometheus scrapes."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        services = self._services
        logged = CounterMetricFamily(
            "error_tracker_events_logged", "Error events stored (replays excluded)", labels=["severity"]
        )
        for severity, count in sorted(services.events.logged.items()):
            logged.add_metric([severity.value], count)
        yield logged
        yield CounterMetricFamily(
            "error_tracker_subscription_executions",
            "Executions of a subscription document on a published event, each shared by all its subscribers",
            value=SharedResultsExecutor.executions,
        )
        active = GaugeMetricFamily(
            "error_tracker_active_subscriptions", "Open subscriptions", labels=["topic"]
        )
        for topic, count in sorted(services.pubsub.subscriber_counts().items()):
            active.add_metric([topic], count)
        yield active
        yield CounterMetricFamily(
            "error_tracker_credential_lookups",
            "Database reads to verify an API key (concurrent misses of one key share one)",
            value=services.auth.lookups,
        )
        sdk = CounterMetricFamily(
            "error_tracker_sdk_events",
            "SDK submissions: accepted, deduplicated (a resent event id), rate_limited or dropped, by reason",
            labels=["outcome", "reason", "project"],
        )
        for labels, n in sorted(services.ingest.counters.counts.items()):
            sdk.add_metric(list(labels), n)
        yield sdk
        status = services.status
        if status.database_up is not None:
            yield GaugeMetricFamily(
                "error_tracker_database_up",
                "1 when the last database ping succeeded",
                value=1 if status.database_up else 0,
            )
        if status.last_ping_seconds is not None:
            yield GaugeMetricFamily(
                "error_tracker_database_probe_seconds",
                "Latency of the last database ping",
                value=status.last_ping_seconds,
            )


class MetricsEndpoint:
    """GET /metrics: the process-wide request metrics and this app's services' figures."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)

    def attach(self, services: Services) -> None:
        """Called by the lifespan once the services exist."""
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(ServicesCollector(services))

    async def endpoint(self, request: Request) -> Response:
        body = generate_latest(REGISTRY) + generate_latest(self._registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
