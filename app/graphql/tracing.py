"""A span per GraphQL operation (OpenTelemetry's GraphQL semantic conventions), added to the schema only
when tracing is on (app.runtime.tracing): off, no span work is done at all."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, get_current_span
from strawberry.extensions import SchemaExtension

REQUEST_ID = "request.id"


def operation_tracing(tracer: Tracer) -> type[SchemaExtension]:
    class OperationTracing(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            context = self.execution_context.context
            request_id = getattr(context, "request_id", None)
            if request_id:
                get_current_span().set_attribute(REQUEST_ID, request_id)  # the request's own span
            with tracer.start_as_current_span("graphql.operation", kind=SpanKind.INTERNAL) as span:
                yield
                ec = self.execution_context
                name = ec.operation_name
                try:
                    kind = ec.operation_type.value
                except RuntimeError:  # the document did not parse
                    kind = None
                span.update_name(" ".join(part for part in (kind, name) if part) or "GraphQL Operation")
                if request_id:
                    span.set_attribute(REQUEST_ID, request_id)
                if name:
                    span.set_attribute("graphql.operation.name", name)
                if kind:
                    span.set_attribute("graphql.operation.type", kind)
                if ec.query:
                    digest = hashlib.sha256(ec.query.encode()).hexdigest()
                    span.set_attribute("graphql.document.hash", f"sha256:{digest}")
                errors = getattr(ec.result, "errors", None) or []
                if errors:
                    span.set_status(Status(StatusCode.ERROR))
                    codes = sorted({str((e.extensions or {}).get("code")) for e in errors if e.extensions})
                    if codes:
                        span.set_attribute("graphql.error.codes", codes)

    return OperationTracing
