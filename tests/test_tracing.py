"""OpenTelemetry tracing: off by default (nothing installed), on with spans per request, operation and
database command, read here from an in-memory exporter."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from ulid import ULID

from app.runtime.app import create_app
from app.runtime.settings import Settings
from app.runtime.tracing import tracing_requested
from tests.conftest import LiveServer, Org, _free_port, make_org, start_server

QUERY = "query Recent($o: ID!) { orgErrors(orgId: $o, first: 3) { totalCount } }"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Spans(SpanExporter):
    """Every finished span, with a way to wait (off the event loop) until the wanted ones are there."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self._changed = threading.Condition()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._changed:
            self.spans.extend(spans)
            self._changed.notify_all()
        return SpanExportResult.SUCCESS

    async def wait_for(self, found: Callable[[list[ReadableSpan]], bool]) -> list[ReadableSpan]:
        def wait() -> list[ReadableSpan]:
            with self._changed:
                assert self._changed.wait_for(lambda: found(self.spans), timeout=10), self.spans
                return list(self.spans)

        return await asyncio.to_thread(wait)


@pytest.fixture(scope="module")
def traced(mongo_uri: str) -> Iterator[tuple[LiveServer, Spans]]:
    spans = Spans()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    settings = Settings(
        mongodb_uri=mongo_uri,
        mongodb_db=f"test_{str(ULID()).lower()}",
        port=_free_port(),
        demo_data=False,
        auth_cache_ttl_seconds=0,
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=24000,
        _env_file=None,  # type: ignore[call-arg]
    )
    live, stop = start_server(settings, tracing=provider)
    try:
        yield live, spans
    finally:
        stop()


async def test_spans_for_the_request_the_operation_and_the_database(
    traced: tuple[LiveServer, Spans],
) -> None:
    live, spans = traced
    org: Org = make_org(live)
    request_id = f"trace-{ULID()}"
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.post(
            "/graphql",
            json={"query": QUERY, "variables": {"o": org.id}},
            headers={
                "X-API-KEY": org.key,
                "X-Request-ID": request_id,
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            },
        )
    assert response.status_code == 200 and "errors" not in response.json()

    def ours(all_spans: list[ReadableSpan]) -> list[ReadableSpan]:
        return [
            s for s in all_spans if s.context is not None and format(s.context.trace_id, "032x") == TRACE_ID
        ]

    def complete(all_spans: list[ReadableSpan]) -> bool:
        kinds = {s.kind for s in ours(all_spans)}
        return (
            SpanKind.SERVER in kinds
            and SpanKind.CLIENT in kinds
            and any(s.name == "query Recent" for s in ours(all_spans))
        )

    trace = ours(await spans.wait_for(complete))
    server = next(s for s in trace if s.kind is SpanKind.SERVER)
    # W3C traceparent honoured: the request's span continues the caller's trace, under its span.
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert server.attributes and server.attributes["request.id"] == request_id

    operation = next(s for s in trace if s.name == "query Recent")
    attributes = dict(operation.attributes or {})
    assert attributes["graphql.operation.name"] == "Recent"
    assert attributes["graphql.operation.type"] == "query"
    assert attributes["graphql.document.hash"] == "sha256:" + hashlib.sha256(QUERY.encode()).hexdigest()
    assert attributes["request.id"] == request_id
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id

    database = [s for s in trace if s.kind is SpanKind.CLIENT]
    assert database and all((s.attributes or {}).get("db.system") == "mongodb" for s in database)


async def test_an_operation_with_errors_is_marked(traced: tuple[LiveServer, Spans]) -> None:
    live, spans = traced
    org = make_org(live)
    async with httpx.AsyncClient(base_url=live.url) as client:
        await client.post(
            "/graphql",
            json={"query": 'query Other { orgErrors(orgId: "not-mine") { totalCount } }'},
            headers={"X-API-KEY": org.key},
        )
    found = await spans.wait_for(lambda all_spans: any(s.name == "query Other" for s in all_spans))
    operation = next(s for s in found if s.name == "query Other")
    assert not operation.status.is_ok
    assert list((operation.attributes or {})["graphql.error.codes"]) in (["NOT_FOUND"], ["FORBIDDEN"])


def test_off_by_default_nothing_is_installed(server: LiveServer) -> None:
    app = create_app(server.settings)
    assert not any(m.cls is OpenTelemetryMiddleware for m in app.user_middleware)
    extensions = app.state.graphql_view.schema.extensions
    assert not any("Tracing" in getattr(e, "__name__", "") for e in extensions)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_switched_on_by_the_standard_variables(environ: dict[str, str], expected: bool) -> None:
    assert tracing_requested(environ) is expected
