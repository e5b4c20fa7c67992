"""GraphQL errors onto the catalog: every GraphQLError of a result becomes one catalogued error.

`format_errors` turns every GraphQLError (wrapping an AppError, a graphql-core document error, or an
unexpected exception) into the shape of docs/errors.md, with the extensions built by `app.core.wire`;
`ErrorFormatter` applies it to every GraphQL result (HTTP and WebSocket alike). Unexpected exceptions are
logged here with their stack trace and request id, then masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, VariableDefinitionNode
from strawberry.extensions import SchemaExtension

from app.core.errors import AppError, ErrorCode, FieldProblem, InternalError
from app.core.wire import extensions

log = logging.getLogger("app.core.errors")

_TOKEN_LIMIT_RE = re.compile(r"Document contains more than \d+ tokens")
_VARIABLE_RE = re.compile(r"^Variable '\$(\w+)' (?:got invalid value .*? at '([^']+)'; )?", re.DOTALL)


def classify(error: GraphQLError) -> AppError | tuple[ErrorCode, str, list[FieldProblem]]:
    """The AppError behind `error`, or (code, message, details) for GraphQL's own errors."""
    original = error.original_error
    if isinstance(original, AppError):
        return original
    if isinstance(error, GraphQLSyntaxError):
        if _TOKEN_LIMIT_RE.search(error.message):  # graphql-core's parser stopped at max_tokens
            problem = FieldProblem("tokens", error.message.removeprefix("Syntax Error: "))
            return ErrorCode.QUERY_TOO_COMPLEX, "Query is too complex", [problem]
        return ErrorCode.GRAPHQL_PARSE_FAILED, error.message, []
    # Document and variable errors carry no path; graphql-core may chain its own GraphQLError, or the
    # ValueError of a literal a scalar cannot read (an Int of 5,000 digits).
    if error.path is None and (original is None or isinstance(original, (GraphQLError, ValueError))):
        if any(isinstance(node, VariableDefinitionNode) for node in error.nodes or ()):
            match = _VARIABLE_RE.match(error.message)
            field = (match.group(2) or match.group(1)) if match else "variables"
            return (
                ErrorCode.INVALID_REQUEST,
                "Request validation failed",
                [FieldProblem(field, error.message)],
            )
        return ErrorCode.GRAPHQL_VALIDATION_FAILED, error.message, []
    return InternalError()


def _wire(error: GraphQLError, message: str, ext: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=ext,
    )


def format_errors(errors: list[GraphQLError], request_id: str) -> tuple[list[ErrorCode], list[GraphQLError]]:
    """Catalogued copies of `errors`. graphql-core reports each bad variable separately; those are
    merged into one INVALID_REQUEST so that every problem of the input is listed together."""
    codes: list[ErrorCode] = []
    wires: list[GraphQLError] = []
    variable_problems: list[FieldProblem] = []
    first_variable_error: GraphQLError | None = None
    for error in errors:
        found = classify(error)
        if isinstance(found, AppError):
            codes.append(found.code)
            wires.append(
                _wire(
                    error, found.message, extensions(found.code, request_id, found.details, found.retry_after)
                )
            )
            continue
        code, message, details = found
        if code is ErrorCode.INVALID_REQUEST and error.path is None:
            first_variable_error = first_variable_error or error
            variable_problems += details
            continue
        codes.append(code)
        wires.append(_wire(error, message, extensions(code, request_id, details)))
    if first_variable_error is not None:
        codes.append(ErrorCode.INVALID_REQUEST)
        ext = extensions(ErrorCode.INVALID_REQUEST, request_id, variable_problems)
        wires.insert(0, _wire(first_variable_error, "Request validation failed", ext))
    return codes, wires


def log_unexpected(errors: list[GraphQLError], request_id: str) -> None:
    """A stack trace for what the client sees as INTERNAL_ERROR; nothing for the client's own mistakes
    (the request's one log line carries their outcome)."""
    for error in errors:
        original = error.original_error
        found = classify(error)
        if not isinstance(found, AppError) or found.code is not ErrorCode.INTERNAL_ERROR:
            continue
        if isinstance(original, AppError):
            cause = original.__cause__ or original
            log.error("internal error", exc_info=cause, extra={"request_id": request_id})
        else:
            log.error(
                "unexpected error in %s",
                ".".join(map(str, error.path or [])) or "operation",
                exc_info=original or error,
                extra={"request_id": request_id},
            )


def worst(codes: list[ErrorCode]) -> ErrorCode:
    return max(codes, key=lambda c: c.status)


class ErrorFormatter(SchemaExtension):
    """Rewrites every error of a result into the catalogued shape (the stock MaskErrors drops
    extensions) and records the outcome for the request log line. Streamed results (subscriptions)
    are rewritten one by one as they are sent; the others once the operation ends."""

    def __init__(self) -> None:
        self._streamed = False

    def on_operation(self) -> Iterator[None]:
        yield
        ctx = self.execution_context.context
        ctx.operation_name = self.execution_context.operation_name
        try:
            ctx.operation_type = self.execution_context.operation_type.value
        except RuntimeError:  # the document did not parse
            ctx.operation_type = None
        if not self._streamed:
            self._format(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        self._streamed = True
        self._format(result)
        yield

    def _format(self, result: Any) -> None:
        if result is None or not getattr(result, "errors", None):
            return
        ctx = self.execution_context.context
        codes, result.errors = format_errors(result.errors, ctx.request_id)
        ctx.outcome = worst(codes).value
