"""The error catalog and the exception tree every layer raises.

    AppError                      code, HTTP status, client-facing message, details
     +-- QueryTooComplex          QUERY_TOO_COMPLEX      400  depth, aliases, tokens or cost over the limits
     +-- InvalidRequest           INVALID_REQUEST        400  bad arguments, cursor, idempotency key
     +-- InvalidDateFormat        INVALID_DATE_FORMAT    400  a DateTime that is not ISO 8601
     +-- ValidationFailed         VALIDATION_ERROR       422  well-formed input that breaks a rule
     +-- InvalidApiKey            INVALID_API_KEY        401  credential missing, unknown or revoked
     +-- TokenExpired             TOKEN_EXPIRED          401  credential past its expiry
     +-- Forbidden                FORBIDDEN              403  credential lacks the scope
     +-- NotFound                 NOT_FOUND              404  missing, or outside the credential's scope
     +-- Conflict                 CONFLICT               409  idempotency key reused with another payload
     +-- PayloadTooLarge          PAYLOAD_TOO_LARGE      413  a body or envelope item over its size limit
     +-- PersistedQueryNotFound   PERSISTED_QUERY_NOT_FOUND   404  hash unknown: resend with the document
     +-- PersistedQueryNotInList  PERSISTED_QUERY_NOT_IN_LIST 403  not a trusted document (TRUSTED_DOCUMENTS)
     +-- RateLimited              RATE_LIMITED           429  request budget spent (carries retry_after)
     +-- ServiceUnavailable       SERVICE_UNAVAILABLE    503  database unreachable (carries retry_after)
     +-- InternalError            INTERNAL_ERROR         500  anything unexpected (never shown verbatim)

GRAPHQL_PARSE_FAILED and GRAPHQL_VALIDATION_FAILED are produced by the GraphQL layer itself
(graphql-core errors, classified in `app.graphql.errors`). `app.core.wire` is the one place that turns an
error into what a client sees. Nothing here knows about GraphQL or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class HeaderSource(Protocol):
    """What a refusal can tell the client in response headers (a spent budget's X-RateLimit-*)."""

    def headers(self) -> dict[str, str]: ...


class ErrorCode(str, Enum):
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_DATE_FORMAT = "INVALID_DATE_FORMAT"
    INVALID_API_KEY = "INVALID_API_KEY"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"

    @property
    def status(self) -> int:
        return HTTP_STATUS[self]


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.GRAPHQL_PARSE_FAILED: 400,
    ErrorCode.GRAPHQL_VALIDATION_FAILED: 400,
    ErrorCode.QUERY_TOO_COMPLEX: 400,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_DATE_FORMAT: 400,
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: 404,
    ErrorCode.PERSISTED_QUERY_NOT_IN_LIST: 403,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}

# Codes whose wire shape always carries a `details` list (errors.md).
CODES_WITH_DETAILS = frozenset(
    {
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_DATE_FORMAT,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.QUERY_TOO_COMPLEX,
        ErrorCode.PAYLOAD_TOO_LARGE,
    }
)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem of one input field; `field` is the path as the client wrote it (`filter.from`)."""

    field: str
    message: str


class AppError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    default_message = "An unexpected error occurred"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[FieldProblem] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or []
        self.retry_after = retry_after
        super().__init__(self.message)


class QueryTooComplex(AppError):
    code = ErrorCode.QUERY_TOO_COMPLEX
    default_message = "Query is too complex"


class InvalidRequest(AppError):
    code = ErrorCode.INVALID_REQUEST
    default_message = "Request validation failed"


class InvalidDateFormat(AppError):
    code = ErrorCode.INVALID_DATE_FORMAT
    default_message = "Invalid date format: expected ISO 8601"


class ValidationFailed(AppError):
    code = ErrorCode.VALIDATION_ERROR
    default_message = "Input validation failed"


class InvalidApiKey(AppError):
    code = ErrorCode.INVALID_API_KEY
    default_message = "Missing or invalid API key"


class TokenExpired(AppError):
    code = ErrorCode.TOKEN_EXPIRED
    default_message = "API key has expired"


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN
    default_message = "This operation needs an admin API key"


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND
    default_message = "Not found"


class Conflict(AppError):
    code = ErrorCode.CONFLICT
    default_message = "Idempotency key was already used with a different payload"


class PayloadTooLarge(AppError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
    default_message = "Request body is too large"


class PersistedQueryNotFound(AppError):
    """Apollo clients recognise this message and code, and resend the request with its document."""

    code = ErrorCode.PERSISTED_QUERY_NOT_FOUND
    default_message = "PersistedQueryNotFound"


class PersistedQueryNotInList(AppError):
    code = ErrorCode.PERSISTED_QUERY_NOT_IN_LIST
    default_message = "Only trusted documents run on this server"


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED
    default_message = "Rate limit exceeded"

    def __init__(
        self, message: str | None = None, *, retry_after: int, budget: HeaderSource | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.budget = budget  # the spent budget, for the X-RateLimit-* headers of the refusal


class ServiceUnavailable(AppError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_message = "The database is unavailable; retry later"

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)


class InternalError(AppError):
    code = ErrorCode.INTERNAL_ERROR
