"""OpenTelemetry tracing, off by default and configured by the standard `OTEL_*` variables.

On when `OTEL_TRACES_EXPORTER` names an exporter other than `none`, or when an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true` turns it
off whatever else is set. The SDK itself reads the rest: `OTEL_SERVICE_NAME` (default here:
error-tracker), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_EXPORTER_OTLP_*` (headers,
protocol http/protobuf, timeout), `OTEL_BSP_*` and `OTEL_PROPAGATORS` (W3C `traceparent` by default).

What is traced: each HTTP request and WebSocket (the ASGI middleware, which continues an incoming
`traceparent`), each GraphQL operation (app.graphql.tracing), each MongoDB command (PyMongo's command
monitoring). Off, none of these is installed: the hot path does no span work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None and exporter.strip():
        return exporter.strip().lower() != "none"
    return any(env.get(name) for name in _OTLP_ENDPOINTS)


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    name = (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: this server ships the otlp and console exporters")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT...


def tracer_provider(environ: Mapping[str, str] | None = None) -> TracerProvider:
    """The process's provider, exporting in batches as OTEL_* say; also made the global one."""
    env = os.environ if environ is None else environ
    attributes: dict[str, Any] = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "error-tracker"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    trace.set_tracer_provider(provider)
    return provider


class DatabaseTracing:
    """Spans for MongoDB commands through PyMongo's command monitoring; the listener is registered for
    clients created after `start` (the runtime's own client), and silenced by `stop`."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

        self._instrumentor = PymongoInstrumentor()
        self._provider = provider

    def start(self) -> None:
        if not self._instrumentor.is_instrumented_by_opentelemetry:
            self._instrumentor.instrument(tracer_provider=self._provider)

    def stop(self) -> None:
        if self._instrumentor.is_instrumented_by_opentelemetry:
            self._instrumentor.uninstrument()
