"""The wire shape of an error: the one place where an AppError becomes the JSON a client sees.

Every transport uses these: GraphQL results (`extensions`, through app.graphql.errors), requests refused
before execution (`error_body`), and the REST routes' envelope (`rest_error_body`). The shape is the error
contract of docs/errors.md.
"""

from __future__ import annotations

from typing import Any

from app.core.clock import format_datetime, utc_now
from app.core.errors import CODES_WITH_DETAILS, AppError, ErrorCode, FieldProblem


def extensions(
    code: ErrorCode,
    request_id: str,
    details: list[FieldProblem] | None = None,
    retry_after: int | None = None,
    status: int | None = None,
) -> dict[str, Any]:
    ext: dict[str, Any] = {
        "code": code.value,
        "status": status or code.status,
        "requestId": request_id,
        "timestamp": format_datetime(utc_now()),
    }
    if code in CODES_WITH_DETAILS or details:
        ext["details"] = [{"field": d.field, "message": d.message} for d in details or []]
    if retry_after is not None:
        ext["retryAfter"] = retry_after
    return ext


def error_body(error: AppError, request_id: str, status: int | None = None) -> dict[str, Any]:
    """`{"errors": [...]}` for a request refused before execution (auth, body, transport).
    `status` overrides the code's own where the transport answers otherwise (405, 413)."""
    ext = extensions(error.code, request_id, error.details, error.retry_after, status)
    return {"errors": [{"message": error.message, "extensions": ext}]}


def rest_error_body(error: AppError, request_id: str) -> dict[str, Any]:
    """The REST compatibility envelope of errors.md: `{"error": {code, message, details, ...}}`."""
    ext = extensions(error.code, request_id, error.details, error.retry_after)
    body: dict[str, Any] = {
        "code": ext["code"],
        "message": error.message,
        "details": ext.get("details", []),
        "requestId": request_id,
        "timestamp": ext["timestamp"],
    }
    if error.retry_after is not None:
        body["retryAfter"] = error.retry_after
    return {"error": body}
